"""A real browser rates clips with the keyboard; the database must show exactly those ratings.

Playwright drives Debian's ``/usr/bin/chromium`` (``scripts/install_chromium.sh`` installs it);
Playwright's own browser download is never used. Skips only when no chromium can be found.
"""

from __future__ import annotations

import shutil
import socket
import sqlite3
import threading
import time

import pytest

from ratingrl.app.demo import DemoSpec, seed_demo
from ratingrl.app.server import create_app

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="chromium not found: run scripts/install_chromium.sh"
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def server(tmp_path):
    import uvicorn

    db = tmp_path / "ratings.db"
    spec = DemoSpec(name="<b>bold</b> & co", n_segments=3, raters=("alice",))
    tokens = seed_demo(f"sqlite:///{db}", spec)
    port = _free_port()
    app = create_app(f"sqlite:///{db}", tmp_path / "clips", "operator-token")
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not srv.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert srv.started, "uvicorn did not start"
    yield f"http://127.0.0.1:{port}", tokens["alice"], db
    srv.should_exit = True
    thread.join(timeout=10)


def test_keyboard_rating_in_chromium(server):
    sync_api = pytest.importorskip("playwright.sync_api")
    url, token, db = server
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            page = browser.new_page()
            page.goto(f"{url}/#token={token}")
            progress = page.locator("#progress")
            sync_api.expect(progress).to_have_text("rated 0 / queued 3")
            # Escaped, not interpreted: the project name is shown as text.
            assert page.locator("#project").text_content() == "<b>bold</b> & co"
            assert page.locator("#project b").count() == 0
            assert "#token" not in page.url  # the token left the address bar
            assert page.locator("#keys").inner_text().count("undo") == 1
            assert page.locator("#levels button").all_inner_texts() == [
                "1 bad", "2 poor", "3 good", "4 excellent",
            ]  # fmt: skip
            # The clip decodes (CSP forbids wait_for_function's eval, so poll from here).
            deadline = time.monotonic() + 30
            while page.evaluate("document.getElementById('video').readyState") < 2:
                assert time.monotonic() < deadline, "the clip never loaded"
                page.wait_for_timeout(100)

            first = page.evaluate("document.body.dataset.clip")
            page.keyboard.press("3")  # rates "good" (level 2)
            sync_api.expect(progress).to_have_text("rated 1 / queued 2")
            page.keyboard.press("s")  # can't tell
            sync_api.expect(progress).to_have_text("rated 2 / queued 1")
            page.keyboard.press("u")  # undo the skip: that clip comes back
            sync_api.expect(progress).to_have_text("rated 1 / queued 2")
            page.keyboard.press("1")
            sync_api.expect(progress).to_have_text("rated 2 / queued 1")
            page.keyboard.press("4")
            sync_api.expect(progress).to_have_text("rated 3 / queued 0")
            sync_api.expect(page.locator("#message")).to_contain_text("No clips left")
        finally:
            browser.close()
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT status, value FROM ratings ORDER BY id").fetchall()
        first_rating = conn.execute(
            "SELECT r.value FROM ratings r JOIN queue_items q ON q.id = r.item_id "
            "WHERE q.public_id = ? ORDER BY r.id LIMIT 1",
            (first,),
        ).fetchone()
    assert rows == [("rated", 2), ("skipped", None), ("undone", None), ("rated", 0), ("rated", 3)]
    assert first_rating == (2,)
