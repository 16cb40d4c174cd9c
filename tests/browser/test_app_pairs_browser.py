"""A real browser drives the comparison page: keys 1 / 2 / E / S / U answer and undo (the
database must hold exactly those answers), Space pauses and plays both clips, the two clips
loop in step, and each page sends a rater to the one their project asks for.

The app and the browser are conftest's (``serve_app``, ``browser``: Debian's
``/usr/bin/chromium``), as in ``test_app_browser.py``; skipped only when no chromium can be
found. The page's CSP forbids eval, so ``wait_for_function`` cannot be used: the tests poll.
"""

from __future__ import annotations

import sqlite3
import time

import pytest

from ratingrl.app import store
from ratingrl.app.demo import DemoSpec, seed_demo, synthetic_segments
from ratingrl.app.schema import open_database

pytestmark = pytest.mark.slow


def _seed(db: str, asks: str, pairs: int, ratings: int) -> str:
    """A demo project asking for ``asks`` with that many pairs and rating clips; alice's token."""
    spec = DemoSpec(n_segments=ratings, raters=("alice",), references=False)
    token = seed_demo(db, spec)["alice"]
    with open_database(db) as database, database.unit() as session:
        project = store.get_project(session)
        store.set_asks(session, project, "both")
        if pairs:
            segs = synthetic_segments(2 * pairs, spec.clip_length, 4, 2, seed=7)
            first, second = segs.subset(range(pairs)), segs.subset(range(pairs, 2 * pairs))
            store.add_pairs(session, project, first, second)
        store.set_asks(session, project, asks)
    return token


@pytest.fixture
def serve(tmp_path, serve_app):
    """``serve(asks, pairs=4, ratings=0)`` -> (url, alice's token, database file)."""
    count = iter(range(100))

    def start(asks: str, pairs: int = 4, ratings: int = 0):
        folder = tmp_path / f"app{next(count)}"
        folder.mkdir()
        db = folder / "ratings.db"
        token = _seed(f"sqlite:///{db}", asks, pairs, ratings)
        return serve_app(f"sqlite:///{db}", folder / "clips", "operator-token"), token, db

    return start


@pytest.fixture
def page(browser):
    return browser.new_page()


VIDEOS = "['left', 'right'].map((id) => document.getElementById(id))"


def _clips(page) -> list[dict]:
    return page.evaluate(
        f"{VIDEOS}.map((v) => ({{t: v.currentTime, paused: v.paused, ended: v.ended,"
        " src: v.getAttribute('src')}))"
    )


def _decoded(poll_page, page) -> None:
    ready = f"{VIDEOS}.map((v) => v.readyState)"
    poll_page(page, ready, lambda s: min(s) >= 2, "clips never loaded")


def _stored(db) -> list[tuple]:
    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT choice, status FROM pair_answers ORDER BY id").fetchall()


def test_keys_answer_skip_and_undo_and_the_database_holds_exactly_that(serve, page, poll_page):
    from playwright.sync_api import expect

    url, token, db = serve("pairs")
    page.goto(f"{url}/pairs#token={token}")
    assert "#token" not in page.url  # the token left the address bar
    progress = page.locator("#progress")
    expect(progress).to_have_text("answered 0 / queued 4")
    keys = page.locator("#keys").inner_text()
    for shown in ("1", "2", "E", "S", "U", "Space", "equally good", "skip", "undo"):
        assert shown in keys
    expect(page.locator("#switch")).to_be_hidden()  # the project asks for pairs only
    _decoded(poll_page, page)
    first = page.evaluate("document.body.dataset.pair")
    clips = _clips(page)
    assert clips[0]["src"] == f"/pair-clips/{first}-left.mp4"
    assert clips[1]["src"] == f"/pair-clips/{first}-right.mp4"

    page.keyboard.press("1")  # left is better
    expect(progress).to_have_text("answered 1 / queued 3")
    second = page.evaluate("document.body.dataset.pair")
    assert second != first
    page.keyboard.press("2")  # right is better
    expect(progress).to_have_text("answered 2 / queued 2")
    page.keyboard.press("u")  # undo: the second pair comes back
    expect(progress).to_have_text("answered 1 / queued 3")
    expect(page.locator("#message")).to_have_text("Undone: compare this pair again.")
    assert page.evaluate("document.body.dataset.pair") == second
    page.keyboard.press("E")  # equally good
    expect(progress).to_have_text("answered 2 / queued 2")
    page.keyboard.press("s")  # can't tell
    expect(progress).to_have_text("answered 3 / queued 1")
    page.keyboard.press("2")
    expect(progress).to_have_text("answered 4 / queued 0")
    expect(page.locator("#message")).to_contain_text("No pairs left")
    expect(page.locator("#pair")).to_be_hidden()
    assert _stored(db) == [
        ("left", "rated"), ("right", "rated"), (None, "undone"), ("equal", "rated"),
        (None, "skipped"), ("right", "rated"),
    ]  # fmt: skip


def test_space_pauses_both_clips_and_they_loop_in_step(serve, page, poll_page):
    from playwright.sync_api import expect

    url, token, _db = serve("pairs", pairs=1)
    page.goto(f"{url}/pairs#token={token}")
    _decoded(poll_page, page)
    poll_page(page, f"{VIDEOS}.map((v) => v.paused)", lambda p: p == [False, False], "not playing")
    play = page.locator("#play")
    page.keyboard.press(" ")
    expect(play).to_have_text("Play (Space)")
    paused = _clips(page)
    assert paused[0]["paused"] and paused[1]["paused"]
    page.wait_for_timeout(300)
    assert [c["t"] for c in _clips(page)] == [c["t"] for c in paused]  # neither moves
    page.keyboard.press(" ")
    expect(play).to_have_text("Pause (Space)")

    # 1 s clips: over 3.5 s both wrap around at least twice and stay within a few frames
    times, deadline = [], time.monotonic() + 3.5
    while time.monotonic() < deadline:
        clips = _clips(page)
        assert all(c["ended"] or not c["paused"] for c in clips)  # playing, or at its end
        times.append([c["t"] for c in clips])
        page.wait_for_timeout(40)
    wraps = sum(1 for a, b in zip(times[:-1], times[1:], strict=True) if b[0] < a[0] - 0.5)
    assert wraps >= 2, times
    apart = [abs(left - right) for left, right in times]
    assert sorted(apart)[len(apart) // 2] < 0.1 and max(apart) < 0.45, apart


def test_each_page_sends_a_rater_to_what_the_project_asks_for(serve, page):
    from playwright.sync_api import expect

    url, token, _db = serve("pairs", pairs=1)  # the rating page forwards to the pairs page
    page.goto(f"{url}/#token={token}")
    page.wait_for_url(f"{url}/pairs")
    expect(page.locator("#progress")).to_have_text("answered 0 / queued 1")

    url, token, _db = serve("ratings", pairs=0, ratings=2)  # and back for ratings only
    page.goto(f"{url}/pairs#token={token}")
    page.wait_for_url(f"{url}/")
    expect(page.locator("#progress")).to_have_text("rated 0 / queued 2")
    expect(page.locator("#switch")).to_be_hidden()

    url, token, _db = serve("both", pairs=1, ratings=2)  # both: a link on each page
    page.goto(f"{url}/#token={token}")
    expect(page.locator("#progress")).to_have_text("rated 0 / queued 2")
    switch = page.locator("#switch")
    expect(switch).to_be_visible()
    switch.click()  # the token stays with the tab
    page.wait_for_url(f"{url}/pairs")
    expect(page.locator("#progress")).to_have_text("answered 0 / queued 1")
    page.keyboard.press("1")
    expect(page.locator("#progress")).to_have_text("answered 1 / queued 0")
    page.locator("#switch").click()
    page.wait_for_url(f"{url}/")
    expect(page.locator("#progress")).to_have_text("rated 0 / queued 2")
