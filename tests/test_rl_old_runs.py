"""Run folders written before the run object existed (config.json without a version, a
checkpoint state pickled as a plain dict) resume and finish as the code that wrote them would.

``tests/data/runs_v1`` holds two such folders, made at commit 38662cc by online runs on
Pendulum (PPO with R4, SAC with RbRL; 20 ratings in two rounds) that a crash stopped in feedback
round 2, after a checkpoint.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from ratingrl.feedback.io import load_rated
from ratingrl.rl.checkpoint import find_checkpoint, load_state
from ratingrl.rl.config import (
    CONFIG_VERSION,
    EARLIER_LOSS_FORMS,
    RunConfig,
    RunError,
    upgrade_config,
)
from ratingrl.rl.run import Run
from ratingrl.rl.state import STATE_VERSION, RunState, RunTiming

RUNS_V1 = Path(__file__).parent / "data" / "runs_v1"

# (name, env steps, final true return, final learned return): the returns are what resuming
# these folders gave with the code that wrote them (commit 38662cc) on the project's machine
OLD_RUNS = [
    ("ppo_r4", 1024, -377.8495178222656, -3.054671049118042),
    ("sac_rbrl", 800, -443.9905700683594, -7.288273334503174),
]


@pytest.mark.parametrize(("name", "steps", "true_final", "learned_final"), OLD_RUNS)
def test_an_old_run_folder_resumes_and_finishes(tmp_path, name, steps, true_final, learned_final):
    run_dir = tmp_path / name
    shutil.copytree(RUNS_V1 / name, run_dir)
    assert "version" not in json.loads((run_dir / "config.json").read_text())
    before = load_rated(run_dir / "feedback.parquet")
    assert len(before) == 10  # round 1's ratings; round 2 was never answered
    summary = Run.resume(run_dir, progress=False).learn()
    after = load_rated(run_dir / "feedback.parquet")
    assert summary["labels_used"] == 20 == len(after) and after.source["rounds_done"] == 2
    assert summary["env_steps"] == steps
    np.testing.assert_array_equal(after.ratings[:10], before.ratings)
    np.testing.assert_array_equal(after.segments.obs[:10], before.segments.obs)
    assert summary["config"]["version"] == CONFIG_VERSION
    assert load_state(find_checkpoint(run_dir))["version"] == STATE_VERSION  # written anew
    # reproducing the old code's resume: the same numbers it gave (deterministic on one
    # machine; another CPU or library build may differ in the last digits)
    assert summary["true_return_final"]["mean"] == pytest.approx(true_final, rel=1e-6)
    assert summary["learned_return_final"]["mean"] == pytest.approx(learned_final, rel=1e-6)


def test_an_old_checkpoint_reads_as_a_typed_state():
    stored = load_state(RUNS_V1 / "sac_rbrl" / "checkpoint")
    assert "version" not in stored
    state = RunState.from_dict(stored)
    assert state.starts == 0 and state.loop == {"trained_on": 10, "trained_retracted": 0}
    assert state.timing.steps == 512 and state.wall_time_s > 0
    assert len(state.evaluations) == 1 and state.recorder["episodes"]
    assert state.sources == [{"rng": stored["source_rngs"][0], "rated": 0}]


def _v1_state(**overrides) -> dict:
    """A version-1 checkpoint state: the dict ``train()`` pickled by hand until 2026-12-03."""
    state = {
        "rng": {"torch": "t", "numpy": "n", "python": "p"},
        "query_rng": {"state": 1},
        "source_rngs": [{"state": 2}, {"state": 3}],
        "teacher_rated": 42,
        "recorder": {"episodes": [], "next_id": 7},
        "eval_history": [{"env_steps": 100}],
        "trained_on": 30,
        "trained_retracted": 2,
        "wall_time_s": 12.5,
        "timing": {"steps": 900, "busy_s": 10.0, "busy_cpu_s": 9.0, "reward_update_s": 1.5},
        "starts": 3,
    }
    state.update(overrides)
    return state


def test_a_version_1_state_maps_onto_every_field():
    state = RunState.from_dict(_v1_state())
    assert state.starts == 3
    assert state.global_rng == {"torch": "t", "numpy": "n", "python": "p"}
    assert state.query_rng == {"state": 1}
    # one source state per channel, in channel order; the teacher's count goes to the first
    assert state.sources == [{"rng": {"state": 2}, "rated": 42}, {"rng": {"state": 3}}]
    assert state.loop == {"trained_on": 30, "trained_retracted": 2}
    assert state.recorder == {"episodes": [], "next_id": 7}
    assert state.evaluations == [{"env_steps": 100}]
    assert state.wall_time_s == 12.5
    assert state.timing == RunTiming(steps=900, busy_s=10.0, busy_cpu_s=9.0, reward_update_s=1.5)
    # and a version-2 state round-trips
    assert RunState.from_dict(state.to_dict()) == state


def test_older_version_1_states_fill_what_they_lack():
    """Before several channels, one ``source_rng``; before timing and starts, none of them."""
    old = _v1_state(source_rng={"state": 9})
    for key in ("source_rngs", "timing", "starts", "trained_retracted", "teacher_rated"):
        del old[key]
    state = RunState.from_dict(old)
    assert state.sources == [{"rng": {"state": 9}}]
    assert state.timing == RunTiming() and state.starts == 0
    assert state.loop == {"trained_on": 30}
    with pytest.raises(ValueError, match="version 99, newer than this ratingrl"):
        RunState.from_dict({"version": 99})


def test_a_version_1_config_is_upgraded_as_that_run_ran():
    stored = json.loads((RUNS_V1 / "ppo_r4" / "config.json").read_text())
    assert "version" not in stored and "plugins" not in stored
    upgraded = upgrade_config(stored)
    assert upgraded["version"] == CONFIG_VERSION and upgraded["plugins"] == []  # JSON form
    kept = {k: upgraded[k] for k in stored if k != "method_settings"}
    assert kept == {k: v for k, v in stored.items() if k != "method_settings"}  # as the file says
    # its R4 trained in the loss form of its time, not in today's default (the released code's)
    assert upgraded["method_settings"] == {**EARLIER_LOSS_FORMS["r4"], **stored["method_settings"]}
    config = RunConfig.load(RUNS_V1 / "ppo_r4" / "config.json")
    assert (config.method, config.total_steps, config.plugins) == ("r4", 1024, ())
    # multi-task runs from before method settings trained with alpha = 1/H
    multitask = {k: v for k, v in stored.items() if k != "method_settings"}
    multitask["method"] = "multitask"
    assert upgrade_config(multitask)["method_settings"] == {"alpha": None}
    old_rule = RunConfig.from_dict(upgrade_config(multitask))
    old_rule.validate()  # alpha None (1/H) is still a valid setting
    assert old_rule.method_settings == {"alpha": None}
    settings = {**multitask, "method_settings": {"alpha": 1.0}}
    assert upgrade_config(settings)["method_settings"] == {"alpha": 1.0}  # stated: kept
    with pytest.raises(RunError, match="version 4, newer than this ratingrl"):
        upgrade_config({**stored, "version": 4})


def test_runs_before_version_3_keep_the_loss_forms_they_trained_with():
    base = {k: v for k, v in RunConfig().to_dict().items() if k not in ("version", "method")}
    r4 = {**base, "version": 2, "method": "r4", "method_settings": {"norm_penalty": 0.05}}
    assert upgrade_config(r4)["method_settings"] == {
        "loss_reduction": "sum_per_group",
        "penalty_params": "weights",
        "norm_penalty": 0.05,
    }
    rbrl = {**base, "version": 2, "method": "rbrl", "method_settings": {}}
    assert upgrade_config(rbrl)["method_settings"] == {"boundary_gradient": True}
    stated = {**rbrl, "method_settings": {"boundary_gradient": False}}  # stored settings win
    assert upgrade_config(stated)["method_settings"] == {"boundary_gradient": False}
    current = {**r4, "version": 3, "method_settings": {}}
    assert upgrade_config(current)["method_settings"] == {}  # today's defaults: released forms
    bt = {**base, "version": 2, "method": "bt", "method_settings": {}}
    assert upgrade_config(bt)["method_settings"] == {}  # other methods did not change
