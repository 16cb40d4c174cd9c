"""The operator page during a live online run taught by a simulated crowd, end to end.

``ratingrl train --ratings-db`` (the CLI's own ``_train``) trains SAC online on DeepMind Control
cartpole; five simulated people (:mod:`ratingrl.feedback.crowd`'s raters, answering from each
clip's true return on the project's 4-level scale, the last one careless and the fastest) rate
its live queries through the app's JSON API, hidden repeats included (``repeat_every=1``). The
operator page is opened before the run starts and never reloaded. It must flag the careless
rater (the one the API flags), follow the run (a new evaluation point, a new latest clip) and,
at the end, draw exactly the API's numbers; the run's ``feedback.parquet`` holds every rater's
labels.

Playwright drives Debian's ``/usr/bin/chromium``; skips only when no chromium can be found. The
page, from its title to the run panel's end, is saved as ``$RATINGRL_SCREENSHOTS/operator_live.png``
(``RATINGRL_SCREENSHOTS=docs/img`` refreshes the committed one), else in the test's temporary
folder, so a test run never changes the working tree.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import time
from dataclasses import replace
from functools import partial
from pathlib import Path

import numpy as np
import pytest

from ratingrl.app.db import bytes_to_array
from ratingrl.app.demo import DemoSpec, seed_demo
from ratingrl.feedback.crowd import CrowdConfig, draw_rater
from ratingrl.feedback.io import load_rated

OPERATOR = "operator-token"
pytestmark = pytest.mark.slow
PACE = {"rater00": 1, "rater01": 2, "rater02": 1, "rater03": 1, "rater04": 3}
"""Clips each rater answers per turn: people work at their own pace, the careless one fastest
(so it rates enough clips, and their hidden repeats, for the dashboard's rule to judge it)."""
CARELESS = "rater04"
FOUR = CrowdConfig(classes_mean=4, classes_sd=0, min_classes=4, max_classes=4)
"""The project's scale has 4 levels: every simulated rater uses 4 classes."""
PAGE = """(() => {
  const v = (id) => { const e = document.getElementById(id);
    return e && e.dataset.values ? JSON.parse(e.dataset.values) : null; };
  const banner = document.getElementById("dash-careless");
  const video = document.getElementById("run-clip");
  return {
    updates: Number(document.getElementById("dashboard").dataset.updates || 0),
    careless: banner.hidden ? [] : JSON.parse(banner.dataset.raters),
    flagged_rows: [...document.querySelectorAll("#dash-raters tr.flagged")]
      .map((r) => r.dataset.rater),
    consistency: v("chart-consistency"), queue: v("dash-queue"), matrix: v("chart-matrix"),
    counts: JSON.parse(document.getElementById("chart-distribution").dataset.counts || "null"),
    timeline: v("chart-timeline"),
    status: document.getElementById("run-status").textContent,
    true: v("run-chart-true"), learned: v("run-chart-learned"), rounds: v("run-chart-rounds"),
    loss: v("run-chart-loss"), clip: video ? video.getAttribute("src") : null,
  };
})()"""


def _true_returns(db: Path, clip: str | None = None) -> np.ndarray:
    """The true return of the queued ``clip`` (the simulated person's perception starts from
    it), or of every segment queued so far."""
    query = "SELECT s.true_rewards FROM segments s"
    if clip is not None:
        query += " JOIN queue_items q ON q.segment_id = s.id WHERE q.public_id = ?"
    with contextlib.closing(sqlite3.connect(db)) as conn:
        rows = conn.execute(query, () if clip is None else (clip,)).fetchall()
    return np.array([bytes_to_array(r).sum() for (r,) in rows])


def _crowd(app_api, url: str, tokens: dict, db: Path, stop: threading.Event, log: dict) -> None:
    """Five simulated raters taking turns at their own pace until the run has stopped and their
    queues (hidden repeats included) are empty. They set their boundaries on the first round's
    clips, as a person calibrates on the first clips seen."""
    try:
        while len(reference := _true_returns(db)) < 8:
            assert not stop.is_set(), "the run stopped before queueing a round"
            time.sleep(0.1)
        crowd = [draw_rater(n, reference, np.random.default_rng([7, i]), FOUR, n == CARELESS)
                 for i, n in enumerate(PACE)]  # fmt: skip
        rngs = {r.name: np.random.default_rng([11, i]) for i, r in enumerate(crowd)}
        given = log["given"] = dict.fromkeys(PACE, 0)
        while True:
            answered = 0
            for rater in crowd:
                for _ in range(PACE[rater.name]):
                    clip = app_api(url, tokens[rater.name], "/api/next")["clip_id"]
                    if clip is None:
                        break
                    level = rater.rate(_true_returns(db, clip), given[rater.name], rngs[rater.name])
                    app_api(url, tokens[rater.name], "/api/ratings",
                         {"clip_id": clip, "rating": int(level[0])})  # fmt: skip
                    given[rater.name] += 1
                    answered += 1
            if not answered:
                if stop.is_set():
                    return
                time.sleep(0.05)
    except Exception as err:  # reported by the test: a thread's exception would vanish
        log["error"] = repr(err)


def _dashboard_mismatches(page: dict, d: dict) -> list[str]:
    """Where the page's dashboard differs from the API's answer ``d`` (empty: it agrees)."""
    names = [r["name"] for r in d["raters"]]
    expected = {
        "careless": [r["name"] for r in d["raters"] if r["careless"]],
        "flagged_rows": [r["name"] for r in d["raters"] if r["careless"]],
        "consistency": [[r["name"], r["consistency"]["exact"], r["careless"]] for r in d["raters"]],
        "queue": d["queue"],
        "counts": {"all": d["distribution"], **{r["name"]: r["distribution"] for r in d["raters"]}},
        "matrix": [[c and c["exact"] for c in row] for row in d["agreement"]["matrix"]],
        "timeline": [r["timeline"] for r in d["raters"]] + [d["timeline"]["total"]],
    }
    got = {
        "careless": page["careless"],
        "flagged_rows": page["flagged_rows"],
        "consistency": [[i["label"], i["value"], i["flag"]] for i in page["consistency"]["items"]],
        "queue": page["queue"],
        "counts": page["counts"],
        "matrix": page["matrix"]["values"] if page["matrix"]["labels"] == names else None,
        "timeline": [[p[1] for p in s["points"]] for s in page["timeline"]["series"]],
    }
    return [f"{k}: page {got[k]!r} != api {v!r}" for k, v in expected.items() if got[k] != v]


def _run_mismatches(page: dict, got: dict) -> list[str]:
    """Where the page's run panel differs from the API's progress ``got`` of the run."""
    evaluations = got["evaluations"]
    steps = [e["env_steps"] for e in evaluations]
    true = [e["true_return"] for e in evaluations]
    known = [e for e in evaluations if e["learned_return"]]
    expected = {
        "true": [  # the mean and its 95% interval
            [[x, r["mean"]] for x, r in zip(steps, true, strict=True)],
            [[x, r["ci95"][0]] for x, r in zip(steps, true, strict=True)],
            [[x, r["ci95"][1]] for x, r in zip(steps, true, strict=True)],
        ],
        "learned": [[e["env_steps"], e["learned_return"]["mean"]] for e in known],
        "rounds": [
            [str(r["round"]) for r in got["rounds"]],
            [r["requested"] for r in got["rounds"]],
            [r["collected"] for r in got["rounds"]],
        ],
        "loss": [[u["labels"], u["loss"]] for u in got["updates"]],
        "clip": got["clip"]["url"],
    }
    rounds = page["rounds"]
    drawn = {
        "true": [s["points"] for s in page["true"]["series"]],
        "learned": page["learned"]["series"][0]["points"],
        "rounds": [rounds["categories"], *[s["values"] for s in rounds["series"]]],
        "loss": page["loss"]["series"][0]["points"],
        "clip": page["clip"],
    }
    return [f"{k}: page {drawn[k]!r} != api {v!r}" for k, v in expected.items() if drawn[k] != v]


def _agree(app_api, page, url: str, run_id: str, after: int, timeout: float = 30.0) -> dict:
    """Poll until the dashboard has updated after ``after`` polls and the whole page matches a
    fresh API answer (page and API are read a moment apart: a poll may be in between)."""
    deadline = time.monotonic() + timeout
    while True:
        shown = page.evaluate(PAGE)
        d = app_api(url, OPERATOR, "/api/operator/dashboard")
        got = app_api(url, OPERATOR, f"/api/operator/runs/{run_id}")
        wrong = ["dashboard not updated yet"] if shown["updates"] <= after else []
        wrong = wrong or _dashboard_mismatches(shown, d) + _run_mismatches(shown, got)
        if not wrong:
            return {"page": shown, "dashboard": d, "run": got}
        assert time.monotonic() < deadline, "; ".join(wrong)
        page.wait_for_timeout(200)


def _follow(page, run: threading.Thread) -> list[dict]:
    """What the page shows, every quarter second while the run's thread is alive."""
    seen = []
    while run.is_alive():
        shown = page.evaluate(PAGE)
        points = shown["true"]["series"][0]["points"] if shown["true"] else []
        seen.append({"points": len(points), "clip": shown["clip"], "careless": shown["careless"],
                     "running": "running" in shown["status"]})  # fmt: skip
        page.wait_for_timeout(250)
    return seen


def _screenshot(poll_page, page, folder: Path) -> Path:
    """The page from its title to the run panel's end (the dashboard above, the run below), the
    clip paused on a frame."""
    video = "document.getElementById('run-clip')"
    poll_page(page, f"{video}.readyState", lambda r: r >= 2, "the latest clip loads", timeout=60)
    page.evaluate(f"() => {{ {video}.pause(); {video}.currentTime = 2.0; }}")
    page.wait_for_timeout(300)
    folder.mkdir(parents=True, exist_ok=True)
    top = page.locator("#dashboard").bounding_box()
    bottom = page.locator("#run-panel").bounding_box()
    clip = {"x": top["x"] - 12, "y": 0, "width": top["width"] + 24,
            "height": bottom["y"] + bottom["height"] + 12}  # fmt: skip
    page.screenshot(path=str(folder / "operator_live.png"), full_page=True, clip=clip)
    return folder / "operator_live.png"


def test_a_crowd_teaches_a_live_run_and_the_page_flags_the_careless_rater(
    tmp_path, dmc_online_config, serve_app, launch_browser, poll_page, app_api, train_cli
):
    config = replace(dmc_online_config, total_steps=500, max_episode_steps=100,
                     candidate_episodes=5, budget=30, per_round=15, schedule_unit=200,
                     eval_every=250, eval_episodes=2, checkpoint_every=300)  # fmt: skip
    path = tmp_path / "ratings.db"
    db = f"sqlite:///{path}"
    spec = DemoSpec(name="cartpole crowd", env_id=config.env_id, n_segments=0,
                    clip_length=config.horizon, size=160, fps=25, ratings_per_clip=3,
                    repeat_every=1, raters=tuple(PACE), references=False)  # fmt: skip
    tokens = seed_demo(db, spec)
    url = serve_app(db, tmp_path / "clips", OPERATOR)
    browser = launch_browser(autoplay=True)
    poll = partial(poll_page, timeout=30.0)  # a training run is slower to show
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    page.goto(f"{url}/operator#token={OPERATOR}")  # before the run, never reloaded
    status = "document.getElementById('run-status').textContent"
    poll(page, status, lambda s: s.startswith("No training run has reported yet"), "empty")
    page.evaluate("window.notReloaded = true")

    stop, people, training = threading.Event(), {}, {}
    crowd = threading.Thread(
        target=_crowd, args=(app_api, url, tokens, path, stop, people), daemon=True
    )
    run = threading.Thread(target=train_cli, args=(config, tmp_path / "run", db, training))
    crowd.start()
    run.start()
    seen = _follow(page, run)
    stop.set()  # the crowd answers what is left in their queues (hidden repeats), then stops
    crowd.join(timeout=60)
    assert "error" not in training and "error" not in people, (training, people)
    assert not crowd.is_alive()

    # while the run was running, the page drew its first evaluation and that clip, and
    # flagged the careless rater
    first = [s for s in seen if s["running"] and s["points"] == 1 and s["clip"]]
    assert first, seen
    assert any(s["running"] and s["careless"] == [CARELESS] for s in seen), seen
    # then, on the same page, a second evaluation point and a new latest clip
    points = "JSON.parse(document.getElementById('run-chart-true').dataset.values)"
    poll(page, f"{points}.series[0].points.length", lambda n: n == 2, "a second evaluation")
    runs = app_api(url, OPERATOR, "/api/operator/runs")["runs"]
    assert [(r["name"], r["status"]) for r in runs] == [("run", "finished")]
    end = _agree(app_api, page, url, runs[0]["run_id"], after=0)  # every chart: the API's numbers
    assert end["page"]["clip"] != first[0]["clip"]
    assert [e["env_steps"] for e in end["run"]["evaluations"]] == [250, 500]
    assert page.evaluate("window.notReloaded === true")

    # the careless rater is the one flagged, by the API and on the page
    d = end["dashboard"]
    assert [r["name"] for r in d["raters"] if r["careless"]] == [CARELESS]
    assert end["page"]["careless"] == end["page"]["flagged_rows"] == [CARELESS]
    judged = {r["name"]: r["consistency"] for r in d["raters"]}
    assert all(c["repeats"] >= d["settings"]["min_repeats"] for c in judged.values()), judged
    banner = page.locator("#dash-careless")
    assert banner.is_visible() and CARELESS in banner.inner_text()
    flagged = page.locator("#chart-consistency g.flagged")
    assert flagged.count() == 1 and flagged.get_attribute("data-label") == CARELESS

    # the run trained on labels from every rater, all of them on disk
    labels = load_rated(tmp_path / "run" / "feedback.parquet")
    collected = sum(r["collected"] for r in end["run"]["rounds"])
    assert len(labels) == training["summary"]["labels_used"] == collected
    assert sorted(set(labels.rater)) == sorted(PACE)

    folder = os.environ.get("RATINGRL_SCREENSHOTS")
    shot = _screenshot(poll_page, page, Path(folder) if folder else tmp_path)
    assert shot.stat().st_size > 50_000
