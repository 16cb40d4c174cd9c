"""The run people are teaching, end to end in a real browser: ``ratingrl train --ratings-db``
trains online on a person's ratings given through the app, reports to the app's database, and
the operator page -- opened before the run started, never reloaded -- follows it: its curves,
labels per round, reward loss and latest evaluation clip hold the numbers the API reports.

Playwright drives Debian's ``/usr/bin/chromium`` as in ``test_app_browser.py``. With
``RATINGRL_SCREENSHOTS=docs/img`` the panel is saved as ``docs/img/run_panel.png``.
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import replace
from functools import partial
from pathlib import Path

import pytest

from ratingrl.app.demo import DemoSpec, seed_demo
from ratingrl.app.run_reporter import AppRunReporter

OPERATOR = "operator-token"
pytestmark = pytest.mark.slow


def _rater(app_api, url: str, token: str, stop: threading.Event, log: dict) -> None:
    """A person rating every clip the queue shows, cycling through the scale."""
    try:
        while not stop.is_set():
            clip = app_api(url, token, "/api/next")["clip_id"]
            if clip is None:
                stop.wait(0.05)
                continue
            app_api(url, token, "/api/ratings", {"clip_id": clip, "rating": len(log["rated"]) % 4})
            log["rated"].append(clip)
    except Exception as err:  # reported by the test: a thread's exception would vanish
        log["error"] = repr(err)


def _values(page, element_id: str) -> dict | None:
    raw = page.evaluate(f"document.getElementById('{element_id}').dataset.values || null")
    return None if raw is None else json.loads(raw)


def test_the_operator_page_follows_the_run_people_teach(
    tmp_path, dmc_online_config, serve_app, launch_browser, poll_page, app_api, train_cli
):
    config = replace(
        dmc_online_config,
        total_steps=500,
        max_episode_steps=100,
        candidate_episodes=5,
        budget=20,
        per_round=10,
        schedule_unit=200,
        eval_every=250,
        eval_episodes=2,
        checkpoint_every=300,
    )
    db = f"sqlite:///{tmp_path / 'ratings.db'}"
    spec = DemoSpec(
        name="cartpole study",
        env_id=config.env_id,
        n_segments=0,
        clip_length=config.horizon,
        size=160,
        fps=25,
        raters=("alice",),
        references=False,
    )
    tokens = seed_demo(db, spec)
    url = serve_app(db, tmp_path / "clips", OPERATOR)
    browser = launch_browser(autoplay=True)
    poll = partial(poll_page, timeout=30.0)  # a training run is slower to show
    page = browser.new_page(viewport={"width": 1280, "height": 1100})
    page.goto(f"{url}/operator#token={OPERATOR}")
    status = "document.getElementById('run-status').textContent"
    poll(page, status, lambda s: s.startswith("No training run has reported yet"), "empty")
    page.evaluate("window.notReloaded = true")

    stop, people, training = threading.Event(), {"rated": []}, {}
    person = threading.Thread(target=_rater, args=(app_api, url, tokens["alice"], stop, people))
    run = threading.Thread(target=train_cli, args=(config, tmp_path / "run", db, training))
    person.start()
    run.start()
    seen = set()  # (status, evaluations drawn) the page showed while the run went on
    while run.is_alive():
        shown = _values(page, "run-chart-true")
        text = page.evaluate(status)
        if shown is not None:
            seen.add(("running" in text, len(shown["series"][0]["points"])))
        page.wait_for_timeout(200)
    stop.set()
    person.join(timeout=10)
    assert "error" not in training and "error" not in people, (training, people)

    runs = app_api(url, OPERATOR, "/api/operator/runs")["runs"]
    assert [(r["name"], r["status"]) for r in runs] == [("run", "finished")]
    got = app_api(url, OPERATOR, f"/api/operator/runs/{runs[0]['run_id']}")
    summary = training["summary"]
    # the API holds the run's own numbers
    assert [e["env_steps"] for e in got["evaluations"]] == [250, 500]
    assert got["evaluations"] == [
        {k: e[k] for k in ("env_steps", "true_return", "learned_return", "episode_length")}
        for e in summary["evaluations"]
    ]
    assert [(r["round"], r["requested"]) for r in got["rounds"]] == [(1, 10), (2, 10)]
    assert sum(r["collected"] for r in got["rounds"]) == summary["labels_used"] == 20
    assert [u["labels"] for u in got["updates"]] == sorted(u["labels"] for u in got["updates"])
    assert got["updates"][-1]["labels"] == 20
    assert got["clip"]["env_steps"] == 500 and got["clip"]["frames"] == 100
    assert got["clip"]["states"] is True

    # the page followed the run live: it drew the run while it was running, then more
    poll(page, status, lambda s: "finished" in s, "the page shows the run finished")
    assert page.evaluate("window.notReloaded === true")
    assert any(running for running, _ in seen), seen
    assert min(n for _, n in seen) < 2

    # every chart holds the API's numbers
    evaluations = got["evaluations"]
    true = [r["true_return"] for r in evaluations]
    steps = [r["env_steps"] for r in evaluations]
    drawn = [s["points"] for s in _values(page, "run-chart-true")["series"]]
    assert drawn == [
        [[x, r["mean"]] for x, r in zip(steps, true, strict=True)],
        [[x, r["ci95"][0]] for x, r in zip(steps, true, strict=True)],  # 95% interval
        [[x, r["ci95"][1]] for x, r in zip(steps, true, strict=True)],
    ]
    learned = _values(page, "run-chart-learned")["series"][0]["points"]
    known = [r for r in evaluations if r["learned_return"]]
    assert learned == [[r["env_steps"], r["learned_return"]["mean"]] for r in known]
    assert learned  # the reward was learned before the last evaluation
    bars = _values(page, "run-chart-rounds")
    assert bars["categories"] == ["1", "2"]
    assert bars["series"][0]["values"] == [r["requested"] for r in got["rounds"]]
    assert bars["series"][1]["values"] == [r["collected"] for r in got["rounds"]]
    loss = _values(page, "run-chart-loss")["series"][0]["points"]
    assert loss == [[u["labels"], u["loss"]] for u in got["updates"]]

    # the latest clip plays: the robot at the project's size, from the API's URL
    video = "document.getElementById('run-clip')"
    poll(page, f"{video}.readyState", lambda r: r >= 2, "the clip loads", timeout=60)
    assert page.evaluate(f"{video}.src") == url + got["clip"]["url"]
    assert page.evaluate(f"[{video}.videoWidth, {video}.videoHeight]") == [160, 160]
    assert page.evaluate(f"{video}.duration") == pytest.approx(100 / 25, abs=0.1)  # 25 fps
    caption = page.locator("#run-clip-caption").text_content()
    assert caption == "The policy at env step 500 (an evaluation episode, its first 100 steps)"

    folder = os.environ.get("RATINGRL_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        page.evaluate(f"() => {{ {video}.pause(); {video}.currentTime = 2.0; }}")
        page.wait_for_timeout(300)
        page.locator("#run-panel").screenshot(path=str(Path(folder) / "run_panel.png"))

    # a second run on the project: the page follows the latest, and the operator can pick
    assert page.locator("#run-choose").is_hidden()
    second = AppRunReporter(db, name="second")
    second.on_start("/runs/second", {**config.to_dict(), "method": "r4"}, 0)
    second.close()
    poll(page, status, lambda s: s.startswith("second: sac r4"), "the latest run is shown")
    assert page.locator("#run-choose").is_visible()
    options = page.locator("#run-select option").all_inner_texts()
    assert options == [
        "latest: second (r4, dmc/cartpole-balance, running)",
        "second (r4, dmc/cartpole-balance, running)",
        "run (rbrl, dmc/cartpole-balance, finished)",
    ]
    page.locator("#run-select").select_option(label=options[2])
    poll(page, status, lambda s: s.startswith("run: sac rbrl"), "the picked run is shown")
    page.wait_for_timeout(2100)  # a poll (every 2 s) later it is still the picked run
    assert page.evaluate(status).startswith("run: sac rbrl")
    assert page.evaluate("window.notReloaded === true")
