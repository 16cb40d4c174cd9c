"""A real browser drives the rating app: keyboard rating (the database must show exactly those
ratings), the player's scrubber, frame steps and speed, the reference clips pop-up, and the
operator page (counts, agreement, self-consistency; refused without the operator token).

The app and the browser are conftest's (``serve_app``, ``browser``): Playwright drives Debian's
``/usr/bin/chromium`` and the tests skip only when no chromium can be found. The page's CSP
forbids eval, so ``wait_for_function`` cannot be used: the tests poll (``poll_page``).
"""

from __future__ import annotations

import json
import re
import sqlite3

import pytest

from ratingrl.app.demo import DemoSpec, seed_demo

OPERATOR = "operator-token"
pytestmark = pytest.mark.slow


@pytest.fixture
def serve(tmp_path, serve_app):
    """``serve(spec)`` -> (url, tokens, db) of a server for that demo project, seeded into a
    fresh database of its own."""
    count = iter(range(100))

    def start(spec: DemoSpec):
        folder = tmp_path / f"app{next(count)}"
        folder.mkdir(parents=True)
        db = folder / "ratings.db"
        tokens = seed_demo(f"sqlite:///{db}", spec)
        return serve_app(f"sqlite:///{db}", folder / "clips", OPERATOR), tokens, db

    return start


@pytest.fixture
def server(serve):
    url, tokens, db = serve(DemoSpec(name="<b>bold</b> & co", n_segments=3, raters=("alice",)))
    return url, tokens["alice"], db


def test_keyboard_rating_in_chromium(server, browser, poll_page):
    from playwright.sync_api import expect

    url, token, db = server
    page = browser.new_page()
    page.goto(f"{url}/#token={token}")
    progress = page.locator("#progress")
    expect(progress).to_have_text("rated 0 / queued 3")
    # Escaped, not interpreted: the project name is shown as text.
    assert page.locator("#project").text_content() == "<b>bold</b> & co"
    assert page.locator("#project b").count() == 0
    assert "#token" not in page.url  # the token left the address bar
    assert page.locator("#keys").inner_text().count("undo") == 1
    assert page.locator("#levels button").all_inner_texts() == [
        "1 bad", "2 poor", "3 good", "4 excellent",
    ]  # fmt: skip
    _wait_decoded(poll_page, page, "#video", "the clip")

    first = page.evaluate("document.body.dataset.clip")
    page.keyboard.press("3")  # rates "good" (level 2)
    expect(progress).to_have_text("rated 1 / queued 2")
    page.keyboard.press("s")  # can't tell
    expect(progress).to_have_text("rated 2 / queued 1")
    page.keyboard.press("u")  # undo the skip: that clip comes back
    expect(progress).to_have_text("rated 1 / queued 2")
    page.keyboard.press("1")
    expect(progress).to_have_text("rated 2 / queued 1")
    page.keyboard.press("4")
    expect(progress).to_have_text("rated 3 / queued 0")
    expect(page.locator("#message")).to_contain_text("No clips left")
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT status, value FROM ratings ORDER BY id").fetchall()
        first_rating = conn.execute(
            "SELECT r.value FROM ratings r JOIN queue_items q ON q.id = r.item_id "
            "WHERE q.public_id = ? ORDER BY r.id LIMIT 1",
            (first,),
        ).fetchone()
    assert rows == [("rated", 2), ("skipped", None), ("undone", None), ("rated", 0), ("rated", 3)]
    assert first_rating == (2,)


def _clip_state(page) -> dict:
    return page.evaluate(
        "(() => { const v = document.getElementById('video'); return {"
        " t: v.currentTime, d: v.duration, paused: v.paused, rate: v.playbackRate,"
        " scrub: Number(document.getElementById('scrub').value) }; })()"
    )


def _wait_decoded(poll_page, page, selector: str, what: str) -> None:
    poll_page(
        page,
        f"Array.from(document.querySelectorAll({selector!r})).map((v) => v.readyState)",
        lambda states: bool(states) and min(states) >= 2,
        f"{what} never loaded",
        timeout=30,
    )


def test_scrubber_frame_steps_and_speed_control_in_chromium(server, browser, poll_page):
    from playwright.sync_api import expect

    url, token, _db = server
    page = browser.new_page()
    page.goto(f"{url}/#token={token}")
    _wait_decoded(poll_page, page, "#video", "the clip")
    state = _clip_state(page)
    assert 0.9 <= state["d"] <= 1.1  # 10 frames at 10 fps
    assert not state["paused"] and state["rate"] == 1  # plays at once, at 1x

    # Space pauses (the button says what it will do), and plays again.
    play = page.locator("#play")
    page.keyboard.press(" ")
    expect(play).to_have_text("Play (Space)")
    assert _clip_state(page)["paused"]
    page.keyboard.press(" ")
    expect(play).to_have_text("Pause (Space)")
    assert not _clip_state(page)["paused"]
    play.click()
    expect(play).to_have_text("Play (Space)")

    # The scrubber (0..1000) seeks the paused clip to that fraction of its length.
    scrub = page.locator("#scrub")
    scrub.fill("750")
    state = _clip_state(page)
    assert state["t"] == pytest.approx(0.75 * state["d"], abs=1e-3)
    scrub.fill("0")
    assert _clip_state(page)["t"] == pytest.approx(0.0, abs=1e-3)
    box = scrub.bounding_box()  # a real click a quarter of the way along
    page.mouse.click(box["x"] + 0.25 * box["width"], box["y"] + box["height"] / 2)
    state = _clip_state(page)
    assert 150 <= state["scrub"] <= 350
    assert state["t"] == pytest.approx(state["d"] * state["scrub"] / 1000, abs=1e-3)

    # Arrow keys step one frame (1 / fps = 0.1 s), and the scrubber follows the clip.
    page.locator("#project").click()  # focus off the slider: its own arrow keys move it
    start = _clip_state(page)["t"]
    page.keyboard.press("ArrowRight")
    state = _clip_state(page)
    assert state["t"] == pytest.approx(start + 0.1, abs=1e-3) and state["paused"]
    expect(scrub).to_have_value(str(round(1000 * state["t"] / state["d"])))
    page.keyboard.press("ArrowLeft")
    page.keyboard.press("ArrowLeft")
    assert _clip_state(page)["t"] == pytest.approx(max(0.0, start - 0.1), abs=1e-3)
    scrub.fill("0")
    page.locator("#project").click()
    page.keyboard.press("ArrowLeft")  # never before the start
    assert _clip_state(page)["t"] == 0

    # The speed control sets playbackRate, and the next clip keeps the chosen speed.
    speed = page.locator("#speed")
    speed.select_option("2")
    assert _clip_state(page)["rate"] == 2
    speed.select_option("0.5")
    assert _clip_state(page)["rate"] == 0.5
    page.locator("#project").click()
    first = page.evaluate("document.body.dataset.clip")
    page.keyboard.press("3")
    expect(page.locator("#progress")).to_have_text("rated 1 / queued 2")
    assert page.evaluate("document.body.dataset.clip") != first
    _wait_decoded(poll_page, page, "#video", "the second clip")
    state = _clip_state(page)
    assert state["rate"] == 0.5 and not state["paused"]


def test_reference_clips_pop_up_in_chromium(serve, browser, poll_page):
    from playwright.sync_api import expect

    url, tokens, _db = serve(DemoSpec(n_segments=2, raters=("alice",)))
    page = browser.new_page()
    page.goto(f"{url}/#token={tokens['alice']}")
    progress = page.locator("#progress")
    expect(progress).to_have_text("rated 0 / queued 2")
    refs = page.locator("#refs")
    expect(refs).to_be_hidden()

    page.keyboard.press("r")  # one clip per level of the scale, labelled like the buttons
    expect(refs).to_be_visible()
    expect(refs.locator("figcaption")).to_have_text(["1 bad", "2 poor", "3 good", "4 excellent"])
    sources = refs.locator("video").evaluate_all("(vs) => vs.map((v) => v.getAttribute('src'))")
    assert len(sources) == 4 == len(set(sources))
    assert all(re.fullmatch(r"/clips/ref-[0-9a-f]{32}\.mp4", src) for src in sources)
    _wait_decoded(poll_page, page, "#refs video", "a reference clip")  # the server renders them
    expect(refs.locator("video").first).to_be_visible()

    page.keyboard.press("r")  # closes it: nothing of it stays on screen
    expect(refs).to_be_hidden()
    expect(refs.locator("video").first).to_be_hidden()

    toggle = page.locator("#refs-toggle")  # the button does the same
    toggle.click()
    expect(refs).to_be_visible()
    expect(refs.locator("figure")).to_have_count(4)  # reopening does not pile up copies
    toggle.click()
    expect(refs).to_be_hidden()

    page.keyboard.press("r")  # rating still works with the pop-up open
    expect(refs).to_be_visible()
    page.keyboard.press("2")
    expect(progress).to_have_text("rated 1 / queued 1")

    keys = page.locator("#keys")  # "?" shows and hides the key help, which names R
    expect(keys).to_be_visible()
    expect(keys).to_contain_text("reference clips")
    page.keyboard.press("?")
    expect(keys).to_be_hidden()
    page.keyboard.press("?")
    expect(keys).to_be_visible()

    # A project without reference clips says so instead of showing an empty box.
    url, tokens, _db = serve(DemoSpec(n_segments=1, raters=("bob",), references=False))
    page = browser.new_page()
    page.goto(f"{url}/#token={tokens['bob']}")
    expect(page.locator("#progress")).to_have_text("rated 0 / queued 1")
    page.locator("#refs-toggle").click()
    expect(page.locator("#refs")).to_have_text("No reference clips in this project.")
    expect(page.locator("#refs video")).to_have_count(0)


ALICE = [0, 1, 2, 3, 0, 1, 2]  # per segment, in segment order
BOB = [0, 1, 3, 3, 1, 1, 2]
ALPHA = "0.890"  # krippendorff.alpha(reliability_data=[ALICE, BOB], level_of_measurement="ordinal")


def _rate_everything(
    app_api, url: str, token: str, db, values: list[int], repeat_shift: int, undone: dict
) -> None:
    """Rate every clip this rater gets: ``values[segment]``; a hidden repeat moves by the shift.

    The first clip first gets the answer ``undone`` (a skip or a rating), which is undone.
    """
    with sqlite3.connect(db) as conn:
        order = [r[0] for r in conn.execute("SELECT id FROM segments ORDER BY id")]
    first = True
    while (clip := app_api(url, token, "/api/next")["clip_id"]) is not None:
        if first:
            app_api(url, token, "/api/ratings", {"clip_id": clip, **undone})
            assert app_api(url, token, "/api/undo", method="POST")["clip_id"] == clip
            first = False
        with sqlite3.connect(db) as conn:
            segment, repeat = conn.execute(
                "SELECT segment_id, is_repeat FROM queue_items WHERE public_id = ?", (clip,)
            ).fetchone()
        value = values[order.index(segment)]
        if repeat:
            value = value + repeat_shift if 0 <= value + repeat_shift <= 3 else value - repeat_shift
        app_api(url, token, "/api/ratings", {"clip_id": clip, "rating": value})


def test_operator_page_counts_agreement_and_consistency_in_chromium(serve, browser, app_api):
    from playwright.sync_api import expect

    # Both raters rate all 7 clips; with a repeat every 4 ratings each gets one hidden repeat.
    spec = DemoSpec(
        name="<i>team</i>",
        n_segments=7,
        raters=("alice", "bob"),
        ratings_per_clip=2,
        repeat_every=4,
    )
    url, tokens, db = serve(spec)

    # Without a token, or with a rater's token, the page (served to anyone: it holds no data)
    # shows nothing of the project: the statistics API refuses with 401.
    page = browser.new_page()
    page.goto(f"{url}/operator")
    expect(page.locator("#message")).to_have_text("Open /operator#token=<operator token>.")
    expect(page.locator("#projects")).to_be_empty()
    page = browser.new_page()
    page.goto(f"{url}/operator#token={tokens['alice']}")
    expect(page.locator("#message")).to_have_text("Operator token refused (401).")
    expect(page.locator("#projects")).to_be_empty()
    assert "#token" not in page.url

    # With the operator token, but the server fails once: said so, and cleared by Refresh.
    page = browser.new_page()
    page.route("**/api/operator/stats", lambda route: route.fulfill(status=500), times=1)
    page.goto(f"{url}/operator#token={OPERATOR}")
    assert "#token" not in page.url  # the token left the address bar
    expect(page.locator("#message")).to_have_text("Could not load the statistics (500).")
    projects = page.locator("#projects")
    expect(projects).to_be_empty()
    page.locator("#refresh").click()
    expect(page.locator("#message")).to_be_empty()

    # The project, escaped, with nothing rated yet.
    expect(projects.locator("h2")).to_have_text("<i>team</i> (synthetic/bars)")
    assert projects.locator("i").count() == 0
    paragraphs = projects.locator("p")
    expect(paragraphs.nth(1)).to_have_text(
        "Krippendorff's alpha (ordinal) on 0 clips rated by several raters: –"
    )
    rows = projects.locator("tr")
    expect(rows).to_have_count(3)
    assert rows.nth(0).locator("th").all_inner_texts() == [
        "rater", "rated", "skipped", "undone", "median s / rating",
        "repeats", "repeat exact", "repeat within 1", "repeat |diff|",
    ]  # fmt: skip
    assert rows.nth(1).locator("td").all_inner_texts() == [
        "alice", "0", "0", "0", "–", "0", "–", "–", "–",
    ]  # fmt: skip

    # Alice repeats one clip a level off, Bob repeats his exactly; each undoes a first answer
    # (Alice a rating, which must not count, Bob a skip). Refresh shows it all.
    _rate_everything(app_api, url, tokens["alice"], db, ALICE, repeat_shift=1, undone={"rating": 3})
    _rate_everything(app_api, url, tokens["bob"], db, BOB, repeat_shift=0, undone={"skip": True})
    page.locator("#refresh").click()
    expect(paragraphs.nth(1)).to_have_text(
        f"Krippendorff's alpha (ordinal) on 7 clips rated by several raters: {ALPHA}"
    )
    expect(paragraphs.nth(0)).to_have_text(
        "scale: bad / poor / good / excellent; segments 7, rated 7, ratings 14, "
        "shown and unanswered 0"
    )
    expect(projects.locator("h2")).to_have_count(1)  # refreshed, not appended
    alice = rows.nth(1).locator("td").all_inner_texts()
    bob = rows.nth(2).locator("td").all_inner_texts()
    assert re.fullmatch(r"\d+\.\d", alice[4]) and re.fullmatch(r"\d+\.\d", bob[4])
    assert alice[:4] + alice[5:] == ["alice", "7", "0", "1", "1", "0.00", "1.00", "1.00"]
    assert bob[:4] + bob[5:] == ["bob", "7", "1", "1", "1", "1.00", "1.00", "0.00"]
    expect(page.locator("#message")).to_be_empty()


def test_a_busy_server_is_asked_again_and_the_rating_lands_once(server, browser, poll_page):
    """The server answers 503 with Retry-After when it sheds load (having done nothing): the
    page says so, waits, and sends the rating again -- it is stored exactly once."""
    from playwright.sync_api import expect

    url, token, db = server
    page = browser.new_page()
    refused = []

    def busy_once(route):
        if route.request.method == "POST" and not refused:
            refused.append(route.request.url)
            route.fulfill(
                status=503,
                headers={"Retry-After": "1", "Content-Type": "application/json"},
                body=json.dumps({"detail": "the server is busy"}),
            )
        else:
            route.continue_()

    page.route("**/api/ratings", busy_once)
    page.goto(f"{url}/#token={token}")
    progress = page.locator("#progress")
    expect(progress).to_have_text("rated 0 / queued 3")
    _wait_decoded(poll_page, page, "#video", "the clip")
    page.keyboard.press("2")
    expect(page.locator("#message")).to_contain_text("busy", timeout=5000)
    expect(progress).to_have_text("rated 1 / queued 2", timeout=10000)
    assert len(refused) == 1
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT status, value FROM ratings").fetchall() == [("rated", 1)]
