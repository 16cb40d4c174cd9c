#!/bin/sh
# Install Debian's chromium for the rating app's browser test (Playwright drives it through
# executable_path; Playwright's own browser download is never used). Idempotent.
set -e
command -v chromium >/dev/null 2>&1 || (apt-get update && apt-get install -y chromium)
