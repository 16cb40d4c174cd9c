"""The operator dashboard in a real browser: its charts hold the numbers the API reports (read
from each chart's ``data-values``), it updates when new ratings arrive without a reload, and a
screenshot of a simulated crowd of five raters, one of them careless, shows that rater flagged.

Playwright drives Debian's ``/usr/bin/chromium`` as in ``test_app_browser.py``; skips only when
no chromium can be found. The screenshot goes to ``$RATINGRL_SCREENSHOTS/dashboard.png`` when
that variable is set (``RATINGRL_SCREENSHOTS=docs/img`` refreshes the committed one), otherwise
into the test's temporary folder, so a test run never changes the working tree.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import time
from pathlib import Path

import numpy as np
import pytest

from ratingrl.app.demo import DemoSpec, seed_demo, synthetic_segments
from ratingrl.feedback.crowd import CrowdConfig, draw_rater

OPERATOR = "operator-token"
pytestmark = pytest.mark.slow
PAGE_VALUES = """(() => {
  const v = (id) => {
    const e = document.getElementById(id);
    return e.dataset.values ? JSON.parse(e.dataset.values) : null;
  };
  const banner = document.getElementById("dash-careless");
  return {
    updates: Number(document.getElementById("dashboard").dataset.updates || 0),
    timeline: v("chart-timeline"), distribution: v("chart-distribution"),
    consistency: v("chart-consistency"), alpha: v("chart-alpha"), matrix: v("chart-matrix"),
    queue: v("dash-queue"), rate: Number(document.getElementById("dash-rate").dataset.total),
    careless: banner.hidden ? [] : JSON.parse(banner.dataset.raters),
  };
})()"""


@pytest.fixture
def serve(tmp_path, serve_app):
    """``serve(spec)`` -> (url, tokens, db): ``spec`` seeded into a fresh database, served."""

    def start(spec: DemoSpec):
        folder = tmp_path / "app"
        folder.mkdir(parents=True)
        tokens = seed_demo(f"sqlite:///{folder / 'ratings.db'}", spec)
        url = serve_app(f"sqlite:///{folder / 'ratings.db'}", folder / "clips", OPERATOR)
        return url, tokens, folder / "ratings.db"

    return start


def _segment_index(db: Path, clip_id: str) -> int:
    """The rated clip's index in the demo's segments (the queued clips are added first)."""
    with contextlib.closing(sqlite3.connect(db)) as conn:
        (segment,) = conn.execute(
            "SELECT segment_id FROM queue_items WHERE public_id = ?", (clip_id,)
        ).fetchone()
        (first,) = conn.execute("SELECT MIN(segment_id) FROM clip_slots").fetchone()
    return segment - first


def _rate(app_api, url: str, token: str, db: Path, level_of, most: int | None = None) -> int:
    """Answer the rater's queue through the API with ``level_of(clip index, k)``; returns how
    many were answered (at most ``most``)."""
    k = 0
    while (most is None or k < most) and (clip := app_api(url, token, "/api/next")["clip_id"]):
        value = int(level_of(_segment_index(db, clip), k))
        app_api(url, token, "/api/ratings", {"clip_id": clip, "rating": value})
        k += 1
    return k


def _mismatches(page: dict, d: dict) -> list[str]:
    """Where the page's charts differ from the API's answer ``d`` (empty: they agree)."""
    names = [r["name"] for r in d["raters"]]
    times = d["timeline"]["times"]
    wrong = []

    def check(what: str, got, expected) -> None:
        if got != expected:
            wrong.append(f"{what}: page {got!r} != api {expected!r}")

    series = page["timeline"]["series"]
    check("timeline names", [s["name"] for s in series], [*names, "total"])
    expected = [r["timeline"] for r in d["raters"]] + [d["timeline"]["total"]]
    check("timeline counts", [[p[1] for p in s["points"]] for s in series], expected)
    check("timeline times", [p[0] for p in series[-1]["points"]][:-1], times[:-1])  # last: now

    def share(counts: list[int]) -> list[float]:
        return [c / sum(counts) if sum(counts) else 0 for c in counts]

    dist = page["distribution"]
    check("distribution levels", dist["categories"], d["scale"]["names"])
    expected = [share(r["distribution"]) for r in d["raters"]] + [share(d["distribution"])]
    got = [s["values"] for s in dist["series"]]
    check("distribution shares", np.round(got, 12).tolist(), np.round(expected, 12).tolist())
    check(
        "self-consistency",
        [(i["label"], i["value"], i["flag"]) for i in page["consistency"]["items"]],
        [(r["name"], r["consistency"]["exact"], r["careless"]) for r in d["raters"]],
    )
    alpha = page["alpha"]["series"][0]["points"]
    check("alpha", [p[1] for p in alpha], [p["alpha"] for p in d["agreement"]["over_time"]])
    check("matrix labels", page["matrix"]["labels"], names)
    expected = [[c and c["exact"] for c in row] for row in d["agreement"]["matrix"]]
    check("matrix", page["matrix"]["values"], expected)
    check("queue", page["queue"], d["queue"])
    check("careless", page["careless"], [r["name"] for r in d["raters"] if r["careless"]])
    return wrong


def _agree(app_api, page, url: str, at_least: int, timeout: float = 30.0) -> dict:
    """Poll until the page has updated ``at_least`` times and its charts match a fresh API
    answer (the two are read a moment apart: a new time bucket may open in between)."""
    deadline = time.monotonic() + timeout
    while True:
        values = page.evaluate(PAGE_VALUES)
        d = app_api(url, OPERATOR, "/api/operator/dashboard")
        wrong = ["not updated yet"] if values["updates"] < at_least else _mismatches(values, d)
        if not wrong:
            return {"page": values, "api": d}
        assert time.monotonic() < deadline, "; ".join(wrong)
        page.wait_for_timeout(200)


def test_charts_hold_the_api_numbers_and_update_live(serve, browser, app_api):
    from playwright.sync_api import expect

    spec = DemoSpec(name="live", n_segments=8, ratings_per_clip=2, repeat_every=2,
                    raters=("alice", "bob"))  # fmt: skip
    url, tokens, db = serve(spec)
    _rate(app_api, url, tokens["alice"], db, lambda i, k: i % 4, most=5)
    _rate(app_api, url, tokens["bob"], db, lambda i, k: (i + k) % 4, most=4)
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    busy = {"status": 503, "content_type": "application/json",
            "body": json.dumps({"detail": "server busy"})}  # fmt: skip
    page.route("**/api/operator/dashboard*", lambda route: route.fulfill(**busy), times=1)
    page.goto(f"{url}/operator#token={OPERATOR}")
    # a refused poll is said in one line, and the next poll (3 s later) clears it
    message = page.locator("#dash-message")
    expect(message).to_have_text("Dashboard not updated (503): server busy; retrying.")
    expect(message).to_be_empty(timeout=15_000)
    first = _agree(app_api, page, url, at_least=1)
    assert first["api"]["timeline"]["total"][-1] == 9
    assert page.locator("#chart-timeline svg path").count() == 3  # two raters and the total
    assert page.locator("#chart-matrix svg rect").count() == 4
    # new ratings arrive: the same page (no reload) shows them within a few polls
    page.evaluate("window.__sameDocument = true")
    updates = first["page"]["updates"]
    _rate(app_api, url, tokens["bob"], db, lambda i, k: (i + k) % 4, most=3)
    later = _agree(app_api, page, url, at_least=updates + 1)
    assert later["api"]["timeline"]["total"][-1] == 12
    assert later["page"]["queue"]["rated"] + later["page"]["queue"]["repeats_rated"] == 12
    assert page.evaluate("window.__sameDocument === true")  # not reloaded


PACE = {"rater00": 3, "rater01": 4, "rater02": 2, "rater03": 3, "rater04": 5}
"""Answers per turn: people work at their own pace (the careless one fastest)."""
ANSWERS = {name: 9 * pace for name, pace in PACE.items()}
"""Answers each simulated rater gives: the study is under way (clips and repeats still queued)."""


def _spread_times(db: Path, minutes: float) -> None:
    """Spread the answers evenly over the last ``minutes`` (submitted within seconds, the
    timeline would be a single step), keeping their order and each answer's time on screen."""
    now = time.time()
    with contextlib.closing(sqlite3.connect(db)) as conn, conn:
        ids = [i for (i,) in conn.execute("SELECT id FROM ratings ORDER BY id")]
        step = minutes * 60 / len(ids)
        for k, row in enumerate(ids):
            t = now - (len(ids) - 1 - k) * step - 1
            conn.execute(
                "UPDATE ratings SET answered_at = ?, shown_at = ? WHERE id = ?", (t, t - 6, row)
            )


def test_screenshot_of_a_crowd_with_a_careless_rater(tmp_path, serve, browser, app_api):
    """Five simulated raters (``feedback.crowd``'s model on the project's 4-level scale), the
    last one careless, rate 60 clips (two raters each) at their own pace through the API; the
    dashboard flags the careless one in its banner and in red, and the screenshot is saved."""
    names = ("rater00", "rater01", "rater02", "rater03", "rater04")
    spec = DemoSpec(name="walker study", n_segments=60, ratings_per_clip=2, repeat_every=3,
                    raters=names, seed=3)  # fmt: skip
    segments = synthetic_segments(spec.n_segments, spec.clip_length, spec.obs_dim,
                                  spec.act_dim, spec.seed)  # fmt: skip
    returns = segments.true_rewards.sum(axis=1)
    rng = np.random.default_rng(7)
    four = CrowdConfig(classes_mean=4, classes_sd=0, min_classes=4, max_classes=4)
    crowd = [draw_rater(n, returns, rng, four, careless=n == "rater04") for n in names]
    url, tokens, db = serve(spec)
    given = dict.fromkeys(names, 0)
    while any(given[n] < ANSWERS[n] for n in names):  # in turns, each at their own pace
        for rater in crowd:

            def level(i: int, k: int, r=rater) -> int:
                return int(r.rate(returns[i : i + 1], given[r.name] + k, rng)[0])

            pace = min(PACE[rater.name], ANSWERS[rater.name] - given[rater.name])
            if pace > 0:
                given[rater.name] += _rate(app_api, url, tokens[rater.name], db, level, most=pace)
    _spread_times(db, minutes=45)
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    page.goto(f"{url}/operator#token={OPERATOR}")
    seen = _agree(app_api, page, url, at_least=1)
    d = seen["api"]
    assert [r["name"] for r in d["raters"] if r["careless"]] == ["rater04"]
    careless = d["raters"][-1]["consistency"]
    assert careless["repeats"] >= d["settings"]["min_repeats"] and careless["exact"] < 0.5
    assert page.locator("#dash-raters tr.flagged").get_attribute("data-rater") == "rater04"
    banner = page.locator("#dash-careless")
    assert banner.is_visible() and "rater04" in banner.inner_text()
    flagged = page.locator("#chart-consistency g.flagged")
    assert flagged.count() == 1 and flagged.get_attribute("data-label") == "rater04"
    assert "careless" in flagged.inner_html()
    out = Path(os.environ.get("RATINGRL_SCREENSHOTS") or tmp_path)
    out.mkdir(parents=True, exist_ok=True)
    page.locator("#dashboard").screenshot(path=str(out / "dashboard.png"))
    assert (out / "dashboard.png").stat().st_size > 20_000
