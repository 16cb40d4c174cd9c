"""The SBX backend (SB3's JAX twin, the optional ``[jax]`` extra): online runs with relabelling
and rollout scoring, checkpoints and resume; a clear error where SBX is not installed.

Every test that trains is skipped when SBX is not installed; the error test runs everywhere.
"""

from __future__ import annotations

import importlib.util
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from ratingrl.feedback.io import load_rated
from ratingrl.feedback.sources import TeacherSource
from ratingrl.rl.backends import single_thread_xla_flags
from ratingrl.rl.builders import make_teacher_source
from ratingrl.rl.checkpoint import find_checkpoint, load_state
from ratingrl.rl.config import RunError
from ratingrl.rl.run import Run
from ratingrl.rl.state import RunState

needs_sbx = pytest.mark.skipif(
    importlib.util.find_spec("sbx") is None, reason="SBX not installed: pip install 'ratingrl[jax]'"
)


def test_sbx_missing_is_a_clear_error(tmp_path, tiny_config, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "sbx" else real(name, *a)
    )
    with pytest.raises(RunError, match=r"--backend sbx\) needs SBX .* 'ratingrl\[jax\]'"):
        Run.create(replace(tiny_config, backend="sbx"), tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()  # refused before anything was written
    with pytest.raises(RunError, match="unknown backend 'tf'"):
        replace(tiny_config, backend="tf").validate()


def test_one_thread_xla_flags_keep_the_users_own():
    assert single_thread_xla_flags(None) == (
        "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
    )
    assert single_thread_xla_flags("--xla_dump_to=/tmp/x").startswith("--xla_dump_to=/tmp/x --xla")
    mine = "--xla_cpu_multi_thread_eigen=true"
    assert single_thread_xla_flags(mine) == mine


@needs_sbx
@pytest.mark.slow
def test_online_sac_on_sbx_relabels_its_replay_buffer(tmp_path, tiny_config):
    from sbx import SAC

    config = replace(tiny_config, backend="sbx")
    run = Run.create(config, tmp_path / "run", progress=False)
    assert isinstance(run.algo, SAC)
    summary = run.learn()
    assert summary["labels_used"] == 20 and summary["env_steps"] == 600
    assert summary["learned_return_final"] is not None
    log = pd.read_csv(tmp_path / "run" / "progress.csv")
    # two updates; the second rescored the whole (wrapped-around) buffer of 400 transitions
    assert log["reward_model/relabelled"].dropna().tolist() == [250.0, 400.0]
    buffer = run.algo.replay_buffer
    obs = buffer.observations.reshape(len(buffer.observations), -1)
    lo, hi = run.algo.action_space.low, run.algo.action_space.high
    acts = lo + 0.5 * (buffer.actions.reshape(len(obs), -1) + 1.0) * (hi - lo)
    np.testing.assert_allclose(
        buffer.rewards[:, 0], run.reward_model.predict_rewards(obs, acts), rtol=1e-5, atol=1e-6
    )


@needs_sbx
@pytest.mark.slow
def test_online_ppo_on_sbx_scores_its_rollouts(tmp_path, tiny_config):
    from sbx import PPO

    config = replace(tiny_config, backend="sbx", algo="ppo", total_steps=512)
    run = Run.create(config, tmp_path / "run", progress=False)
    assert isinstance(run.algo, PPO)
    summary = run.learn()
    assert summary["labels_used"] == 20
    scored = pd.read_csv(tmp_path / "run" / "progress.csv")["reward_model/rollout_reward_mean"]
    assert scored.dropna().abs().gt(0).any()  # the learned reward reached PPO's rollouts


@needs_sbx
@pytest.mark.slow
def test_sbx_run_stopped_mid_run_resumes_with_its_key_and_every_label(
    tmp_path, tiny_config, crashing
):
    """The source dies asking round 2's queries: the resumed SBX run puts back its model, its
    replay buffer and its JAX key (SB3's load would reseed it), and finishes the budget."""
    config = replace(tiny_config, backend="sbx")
    teacher = make_teacher_source(config)
    dies = crashing(TeacherSource, at_round=2)(teacher.teacher, teacher.rng)
    run_dir = tmp_path / "run"
    with pytest.raises(RuntimeError, match="stopped in round 2"):
        Run.create(config, run_dir, source=dies, progress=False).learn()
    state = RunState.from_dict(load_state(find_checkpoint(run_dir)))
    saved_key = state.algorithm_rng["jax_key"]

    resumed = Run.resume(run_dir, progress=False)
    np.testing.assert_array_equal(np.asarray(resumed.algo.key), saved_key)
    buffer = resumed.algo.replay_buffer
    assert buffer.full or buffer.pos > 0  # the checkpoint's transitions are back
    summary = resumed.learn()
    assert summary["labels_used"] == 20 == len(load_rated(run_dir / "feedback.parquet"))
    assert summary["env_steps"] == 600 and (run_dir / "progress.resume1.csv").exists()
    final = RunState.from_dict(load_state(find_checkpoint(run_dir)))
    assert final.starts == 1 and final.algorithm_rng is not None
