"""The run object: it checks its configuration before touching a folder, takes its parts from
the caller (a feedback source, a reward updater), checkpoints a typed state and resumes from
it after a crash with every label kept."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from ratingrl.feedback.io import load_rated
from ratingrl.feedback.sources import TeacherSource
from ratingrl.rl.builders import make_teacher_source
from ratingrl.rl.checkpoint import find_checkpoint, load_state
from ratingrl.rl.config import CONFIG_VERSION, RunConfig, RunError
from ratingrl.rl.run import Run
from ratingrl.rl.state import STATE_VERSION, RunState


def test_resume_fills_fields_newer_than_the_stored_config(tmp_path, tiny_config):
    """A run started before a field existed resumes: it ran with what is now the default."""
    run = tmp_path / "run"
    run.mkdir()
    old = tiny_config.to_dict()
    del old["preference_budget"]  # config.json written before the field was added
    (run / "config.json").write_text(json.dumps(old))
    assert RunConfig.load(run / "config.json") == tiny_config  # 0 is the default
    with pytest.raises(RunError, match="preference_budget: 0 -> 5"):
        Run.resume(run, config=replace(tiny_config, preference_budget=5), progress=False)
    assert json.loads((run / "config.json").read_text()) == old  # resuming rewrites nothing
    (run / "config.json").write_text(json.dumps({**old, "retired_field": 1}))
    with pytest.raises(RunError, match="unknown configuration fields \\['retired_field'\\]"):
        Run.resume(run, config=tiny_config, progress=False)
    with pytest.raises(RunError, match="not a run folder"):
        Run.resume(tmp_path / "elsewhere", progress=False)


def test_a_new_run_checkpoints_a_typed_state_a_resume_reads(tmp_path, tiny_config):
    run_dir = tmp_path / "run"
    run = Run.create(tiny_config, run_dir, progress=False)
    assert RunConfig.load(run_dir / "config.json") == tiny_config
    assert json.loads((run_dir / "config.json").read_text())["version"] == CONFIG_VERSION
    state = run.state_dict()
    assert state.starts == 0 and state.evaluations == [] and state.loop["trained_on"] == 0
    assert len(state.sources) == 1 and "rng" in state.sources[0]  # the teacher's stream
    summary = run.summary()
    assert summary["labels_used"] == 0 and summary["env_steps"] == 0
    assert summary["config"] == tiny_config.to_dict()
    run.checkpoint()
    stored = load_state(find_checkpoint(run_dir))
    assert stored["version"] == STATE_VERSION
    assert RunState.from_dict(stored).sources == state.sources
    resumed = Run.resume(run_dir, progress=False)
    assert resumed.config == tiny_config and resumed.state_dict().starts == 1
    assert resumed.channels[0].source.state_dict() == state.sources[0]
    with pytest.raises(RunError, match="not empty"):
        Run.create(tiny_config, run_dir, progress=False)


@pytest.mark.slow
def test_run_trains_its_reward_with_the_given_updater(tmp_path, tiny_config, spy_updater):
    spy = spy_updater(tiny_config)
    run = Run.create(tiny_config, tmp_path / "run", updater=spy, progress=False)
    summary = run.learn()
    assert summary["labels_used"] == 20
    assert spy.calls, "the run never called the updater it was given"
    assert [warm for _, warm in spy.calls] == [False] + [True] * (len(spy.calls) - 1)
    (last, *_), _ = spy.calls[-1]
    assert len(last) == 20  # the last update saw every label
    assert run.reward_model is spy.models[-1]  # the run's reward is the updater's
    log = pd.read_csv(tmp_path / "run" / "progress.csv")
    assert log["reward_model/loss"].notna().sum() == len(spy.calls)


@pytest.mark.slow
def test_run_crashed_in_a_round_resumes_with_every_label(tmp_path, tiny_config, crashing):
    """The source dies asking round 2's queries (after a checkpoint): the resumed run, with the
    simulated teacher again, asks round 2 and finishes with the whole budget."""
    teacher = make_teacher_source(tiny_config)
    dies = crashing(TeacherSource, at_round=2)(teacher.teacher, teacher.rng)
    run_dir = tmp_path / "run"
    with pytest.raises(RuntimeError, match="stopped in round 2"):
        Run.create(tiny_config, run_dir, source=dies, progress=False).learn()
    before = load_rated(run_dir / "feedback.parquet")
    assert (len(before), before.source["rounds_done"]) == (10, 1)
    assert not (run_dir / "summary.json").exists()

    resumed = Run.resume(run_dir, progress=False)
    summary = resumed.learn()
    after = load_rated(run_dir / "feedback.parquet")
    assert summary["labels_used"] == 20 == len(after) and after.source["rounds_done"] == 2
    np.testing.assert_array_equal(after.ratings[:10], before.ratings)
    np.testing.assert_array_equal(after.segments.obs[:10], before.segments.obs)
    assert summary["env_steps"] == 600 and summary["config"]["version"] == CONFIG_VERSION
    assert RunState.from_dict(load_state(find_checkpoint(run_dir))).starts == 1
    assert (run_dir / "progress.resume1.csv").exists()
