"""End-to-end runs on Pendulum with tiny nets: summaries, bad input, resume after kill -9."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from ratingrl.feedback.io import load_preferences, load_rated, save_preferences
from ratingrl.feedback.segments import PreferencePairs
from ratingrl.feedback.teachers import PreferenceTeacher
from ratingrl.rl.checkpoint import load_state
from ratingrl.rl.config import RunConfig, RunError
from ratingrl.rl.state import RunState
from ratingrl.rl.train import train

SUMMARY_KEYS = {
    "true_return_final",
    "true_return_best",
    "learned_return_final",
    "labels_used",
    "env_steps",
    "wall_time_s",
    "env_steps_per_s",
    "config",
}


def _check_summary(summary: dict, run: Path) -> None:
    assert SUMMARY_KEYS <= set(summary)
    final = summary["true_return_final"]
    assert set(final) == {"mean", "std", "ci95", "episodes"}
    assert len(final["episodes"]) == summary["config"]["eval_episodes"]
    assert final["mean"] == pytest.approx(np.mean(final["episodes"]))
    if final["ci95"] is not None:
        assert final["ci95"][0] <= final["mean"] <= final["ci95"][1]
    assert json.loads((run / "summary.json").read_text())["env_steps"] == summary["env_steps"]


@pytest.mark.slow
def test_online_sac_collects_the_budget_and_relabels(tmp_path, tiny_config):
    summary = train(tiny_config, tmp_path / "run", progress=False)
    _check_summary(summary, tmp_path / "run")
    assert summary["labels_used"] == 20 and summary["env_steps"] == 600
    assert summary["learned_return_final"] is not None
    assert len(load_rated(tmp_path / "run" / "feedback.parquet")) == 20
    log = (tmp_path / "run" / "progress.csv").read_text().splitlines()[0]
    assert "reward_model/relabelled" in log and "eval/true_return" in log
    # each update said how the reward ranked the policy's own segments (two rounds of 10)
    rows = summary["reward_fidelity"]
    assert [r["labels"] for r in rows] == [10, 20]
    assert rows[0]["tau_new_before"] is None and rows[1]["tau_new_before"] is not None
    assert all(-1 <= r["tau_all"] <= 1 and 1 <= r["classes_used"] <= 4 for r in rows)
    assert "reward_fidelity/tau_all" in log and "reward_fidelity/tau_new_before" in log


def test_oracle_and_offline_ppo(tmp_path, tiny_config, pendulum_rated):
    oracle = replace(tiny_config, method="oracle", algo="ppo", total_steps=256)
    summary = train(oracle, tmp_path / "oracle", progress=False)
    _check_summary(summary, tmp_path / "oracle")
    assert summary["learned_return_final"] is None and summary["labels_used"] == 0
    offline = replace(oracle, method="r4", mode="offline", dataset=str(pendulum_rated))
    summary = train(offline, tmp_path / "offline", progress=False)
    assert summary["labels_used"] == len(load_rated(pendulum_rated))
    assert summary["learned_return_final"] is not None
    assert (tmp_path / "offline" / "reward_model.pt").exists()


def test_offline_mixed_ratings_and_preferences(tmp_path, tiny_config, pendulum_rated):
    segs = load_rated(pendulum_rated).segments
    half = len(segs) // 2
    a, b = segs.subset(range(half)), segs.subset(range(half, 2 * half))
    labels, _ = PreferenceTeacher().label(a, b, np.random.default_rng(0))
    prefs = tmp_path / "prefs.parquet"
    save_preferences(PreferencePairs(a, b, labels), prefs)
    config = replace(
        tiny_config,
        mode="offline",
        method="r4",
        dataset=str(pendulum_rated),
        preferences=str(prefs),
        total_steps=150,
    )
    summary = train(config, tmp_path / "mixed", progress=False)
    assert summary["labels_used"] == len(segs) + half
    assert summary["reward_model"]["epochs"] >= 1


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"env_id": "NoSuchEnv-v9"}, "unknown environment"),
        ({"algo": "dqn"}, "unknown algo"),
        ({"method": "magic"}, "unknown method"),
        ({"budget": 100}, "the run has only 600"),
        ({"mode": "offline"}, "needs --dataset"),
        ({"env_id": "Pendulum-v1", "rating_range": None}, "rating-range"),
    ],
)
def test_bad_input_fails_before_training(tmp_path, tiny_config, changes, message):
    with pytest.raises(ValueError, match=message):
        train(replace(tiny_config, **changes), tmp_path / "bad", progress=False)
    assert not (tmp_path / "bad").exists()  # nothing was started


def test_dataset_from_another_env_is_rejected(tmp_path, tiny_config, pendulum_rated):
    config = replace(
        tiny_config, env_id="dmc/cartpole-balance", mode="offline", dataset=str(pendulum_rated)
    )
    with pytest.raises(RunError, match="different environment"):
        train(config, tmp_path / "bad", progress=False)
    assert not (tmp_path / "bad").exists()


def test_existing_run_is_not_overwritten_and_resume_checks_config(tmp_path, tiny_config):
    run = tmp_path / "run"
    run.mkdir()
    (run / "notes.txt").write_text("mine")
    with pytest.raises(RunError, match="not empty"):
        train(tiny_config, run, progress=False)
    with pytest.raises(RunError, match="not a ratingrl run folder"):
        train(tiny_config, run, overwrite=True, progress=False)
    assert (run / "notes.txt").read_text() == "mine"
    (run / "config.json").write_text(json.dumps(replace(tiny_config, seed=5).to_dict()))
    with pytest.raises(RunError, match="another configuration.*seed"):
        train(tiny_config, run, resume=True, progress=False)


_CHILD = """
import sys, torch
torch.set_num_threads(1)
from ratingrl.rl.config import RunConfig
from ratingrl.rl.train import train
config = RunConfig.from_dict(__import__("json").loads(sys.argv[1]))
train(config, sys.argv[2], resume=sys.argv[3] == "1", progress=False)
"""


def _kill_when(config: RunConfig, run: Path, ready: Callable[[], bool]) -> None:
    """Start ``config`` in a child process and ``kill -9`` it as soon as ``ready()`` holds."""
    cmd = [sys.executable, "-c", _CHILD, json.dumps(config.to_dict()), str(run)]
    child = subprocess.Popen([*cmd, "0"], env={**os.environ, "PYTHONHASHSEED": "0"})
    try:
        deadline = time.time() + 120
        while time.time() < deadline and child.poll() is None:
            if ready():
                break
            time.sleep(0.05)
        assert child.poll() is None, "the run ended before it could be killed"
        assert ready(), "the run did not reach the point to kill it at in 120 s"
    finally:
        if child.poll() is None:
            os.kill(child.pid, signal.SIGKILL)
        child.wait()


@pytest.mark.slow
def test_resume_after_kill_keeps_every_label(tmp_path, tiny_config):
    config = replace(tiny_config, total_steps=1500, budget=40, schedule_unit=300, eval_every=1000)
    run = tmp_path / "run"
    feedback = run / "feedback.parquet"
    _kill_when(config, run, lambda: feedback.exists() and len(load_rated(feedback)) >= 20)
    before = load_rated(feedback)
    assert not (run / "summary.json").exists()
    first = RunState.from_dict(load_state(run / "checkpoint")).timing  # the killed session's
    assert first.steps > 0 and first.reward_update_s > 0
    summary = train(config, run, resume=True, progress=False)
    after = load_rated(feedback)
    assert summary["labels_used"] == 40 == len(after)
    # speed and update time cover the whole run, each step counted once
    whole = RunState.from_dict(load_state(run / "checkpoint")).timing
    assert whole.steps == 1500 and whole.busy_cpu_s > first.busy_cpu_s
    assert summary["reward_update_s"] == whole.reward_update_s > first.reward_update_s
    assert summary["env_steps_per_cpu_s"] == pytest.approx(1500 / whole.busy_cpu_s)
    np.testing.assert_array_equal(after.ratings[: len(before)], before.ratings)
    np.testing.assert_array_equal(after.segments.obs[: len(before)], before.segments.obs)
    assert summary["env_steps"] == 1500
    assert (run / "progress.resume1.csv").exists() and (run / "progress.csv").exists()


@pytest.mark.slow
def test_bt_resume_after_kill_keeps_every_pair(tmp_path, tiny_config):
    """kill -9 of an online preference (bt) run after its first round: no pair is lost."""
    config = replace(
        tiny_config, method="bt", total_steps=1500, budget=40, schedule_unit=300, eval_every=1000
    )
    run = tmp_path / "run"
    feedback = run / "feedback.parquet"
    _kill_when(config, run, lambda: feedback.exists() and len(load_preferences(feedback)) >= 10)
    before = load_preferences(feedback)
    assert 10 <= len(before) < 40 and not (run / "summary.json").exists()
    summary = train(config, run, resume=True, progress=False)
    after = load_preferences(feedback)
    assert summary["labels_used"] == summary["pairs_used"] == 40 == len(after)
    assert summary["ratings_used"] == 0 and after.source["rounds_done"] == 4
    n = len(before)
    np.testing.assert_array_equal(after.labels[:n], before.labels)
    for side in ("first", "second"):
        old, new = getattr(before, side), getattr(after, side)
        np.testing.assert_array_equal(new.obs[:n], old.obs)
        np.testing.assert_array_equal(new.acts[:n], old.acts)
    assert summary["env_steps"] == 1500
    assert json.loads((run / "summary.json").read_text())["labels_used"] == 40
    assert (run / "progress.resume1.csv").exists() and (run / "progress.csv").exists()
