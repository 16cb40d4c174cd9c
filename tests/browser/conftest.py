"""Fixtures of the browser tests: the rating app served by uvicorn in a thread, Debian's
chromium driven by Playwright, and the helpers that poll a page and ask the app's JSON API.

Only the tests in this folder use them; the fixtures every test shares (databases, tiny runs,
fake sources) are in ``tests/conftest.py``.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import socket
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from ratingrl.rl.config import RunConfig

# -- the rating app served, and driven by a real browser -----------------------------------------
CHROMIUM_ARGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run")  # fmt: skip


@contextlib.contextmanager
def _serving(app) -> Iterator[str]:
    """``app`` served by uvicorn on a free local port, in a thread; yields its URL."""
    import uvicorn

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    try:
        assert server.started, "uvicorn did not start"
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture
def serve_app() -> Iterator[Callable[[str, Path, str], str]]:
    """``serve_app(db_url, clips_folder, operator_token)`` -> the URL of the rating app on that
    database, served as ``ratingrl app serve`` would (uvicorn, a free local port) from a thread
    of the test's process, so the test can read the database while a browser uses the app.
    Every app served is stopped after the test."""
    from ratingrl.app.server import create_app

    with contextlib.ExitStack() as stack:
        yield lambda db, clips, operator: stack.enter_context(
            _serving(create_app(db, clips, operator))
        )


@pytest.fixture
def launch_browser() -> Iterator[Callable[..., object]]:
    """``launch_browser(autoplay=False)`` -> a headless Playwright chromium, closed after the
    test. It is Debian's ``/usr/bin/chromium`` (``scripts/install_chromium.sh`` installs it),
    never Playwright's own download; the test is skipped when there is no chromium or no
    Playwright. ``autoplay``: videos may play with sound before any click."""
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        pytest.skip("chromium not found: run scripts/install_chromium.sh")
    sync_api = pytest.importorskip("playwright.sync_api")
    launched = []
    with sync_api.sync_playwright() as playwright:

        def launch(autoplay: bool = False):
            args = [*CHROMIUM_ARGS]
            if autoplay:
                args.append("--autoplay-policy=no-user-gesture-required")
            launched.append(playwright.chromium.launch(executable_path=path, args=args))
            return launched[-1]

        yield launch
        for browser in launched:
            with contextlib.suppress(Exception):  # a browser that crashed is closed already
                browser.close()


@pytest.fixture
def browser(launch_browser: Callable[..., object]):
    """A headless chromium (:func:`launch_browser`): ``browser.new_page()`` opens a page."""
    return launch_browser()


def poll_page(page, expression: str, check: Callable, what: str, timeout: float = 20.0):
    """Evaluate ``expression`` in ``page`` until ``check(value)`` holds; returns the value. The
    app's CSP forbids eval, which Playwright's ``wait_for_function`` needs: tests poll instead.
    After ``timeout`` seconds the test fails with ``what`` and the last value."""
    deadline = time.monotonic() + timeout
    while not check(value := page.evaluate(expression)):
        assert time.monotonic() < deadline, f"{what} (last value {value!r})"
        page.wait_for_timeout(50)
    return value


@pytest.fixture(name="poll_page")
def poll_page_fixture() -> Callable[..., object]:
    """:func:`poll_page`: ``poll_page(page, "document.title", bool, "a title", timeout=20)``."""
    return poll_page


def app_api(url: str, token: str, path: str, body: dict | None = None, method: str = "") -> dict:
    """The app's JSON answer to ``method path`` (GET without ``body``, POST with one) at ``url``,
    asked with ``token`` (a rater's or the operator's) as any client would, over HTTP. An error
    answer raises ``urllib.error.HTTPError``."""
    request = urllib.request.Request(
        url + path,
        method=method or ("GET" if body is None else "POST"),
        data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=20) as response:
        return json.loads(response.read())


@pytest.fixture(name="app_api")
def app_api_fixture() -> Callable[..., dict]:
    """:func:`app_api`: ``app_api(url, token, "/api/ratings", {"clip_id": c, "rating": 2})``."""
    return app_api


def train_cli(config: RunConfig, out: Path, db_url: str, log: dict) -> None:
    """Train ``config`` into ``out`` as ``ratingrl train --ratings-db db_url`` does (the CLI's
    own code), for a thread: the run's summary goes to ``log["summary"]``, or an exception's
    repr to ``log["error"]`` (a thread's exception would vanish)."""
    from ratingrl.cli.train import _train as train_command

    try:
        log["summary"] = train_command(config, None, out, False, False, db_url, None)
    except Exception as err:
        log["error"] = repr(err)


@pytest.fixture(name="train_cli")
def train_cli_fixture() -> Callable[[RunConfig, Path, str, dict], None]:
    """:func:`train_cli`: ``threading.Thread(target=train_cli, args=(config, out, db, log))``."""
    return train_cli


