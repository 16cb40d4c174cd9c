"""Every benchmark track's run configuration passes the run's checks (no typo costs a sweep),
and the sweep's report compares stopped runs fairly."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from ratingrl.cli import app
from ratingrl.experiments.tracks import TRACKS, run_config
from ratingrl.rl.builders import make_teacher_source
from ratingrl.rl.config import RunConfig
from ratingrl.rl.train import check

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()


def _sweep_module():
    spec = importlib.util.spec_from_file_location(
        "policy_sweep", ROOT / "benchmarks/policy_sweep.py"
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


SWEEP = _sweep_module()
CASES = [
    (track, env, method)
    for track, spec in TRACKS.items()
    for env in spec.envs[:2]
    for method in ("r4", "bt")
]


@pytest.mark.parametrize(("track", "env", "method"), CASES)
def test_track_configs_pass_check(track, env, method):
    config = run_config(track, env, method, seed=0)
    plan = check(config)
    assert plan["env_id"] == env
    assert plan["schedule"]["steps"][-1] < config.total_steps
    assert sum(plan["schedule"]["counts"]) == config.budget


SPARSE_EARLY = ("dmc/finger-spin", "dmc/walker-walk", "dmc/cheetah-run")
"""DMC tasks whose early policies score a few percent of a segment's maximum."""


@pytest.mark.parametrize(
    ("track", "env"),
    [(t, e) for t, spec in TRACKS.items() for e in spec.envs if e in SPARSE_EARLY],
)
def test_track_teachers_tell_early_segments_apart(track, env):
    # ppo1m once rated every early finger-spin segment 0 (equal-width classes over [0, 50]):
    # one class teaches nothing, and the learned rewards never moved.
    config = run_config(track, env, "r4", seed=0)
    teacher = make_teacher_source(config).teacher
    early = np.array([0.01, 0.04, 0.08, 0.15]) * config.horizon
    assert len(set(teacher.bins.classify(early).tolist())) >= 3


def test_a_track_run_is_its_overrides_on_the_defaults(tmp_path):
    config = run_config("sac300k", "dmc/cheetah-run", "rbrl", seed=2)
    assert (config.env_id, config.method, config.seed) == ("dmc/cheetah-run", "rbrl", 2)
    assert config.total_steps == 300_000 and config.net_arch == (64, 64)
    assert config.ensemble_size == RunConfig().ensemble_size  # not overridden: the default
    run = tmp_path / "runs" / "rbrl_s2"
    cmd = SWEEP.command("sac300k", "dmc/cheetah-run", "rbrl", 2, run)
    stored = Path(cmd[cmd.index("--config") + 1])
    assert RunConfig.load(stored) == config and cmd[cmd.index("--out") + 1] == str(run)
    with pytest.raises(ValueError, match="runs on"):
        run_config("sac300k", "dmc/cartpole-balance", "r4", 0)


def test_check_writes_nothing_and_rejects_a_schedule_that_does_not_fit(tmp_path):
    base = ["train", "--env", "dmc/cartpole-balance", "--out", str(tmp_path / "run"), "--check"]
    assert runner.invoke(app, [*base, "--steps", "400000"]).exit_code == 0
    too_long = ["--steps", "1000", "--budget", "100", "--schedule-unit", "10000"]
    result = runner.invoke(app, [*base, *too_long])
    assert result.exit_code != 0 and "schedule" in result.output
    assert not (tmp_path / "run").exists()


def _run(returns, finished, steps_per_cpu_s=100.0):
    steps = [25_000 * (i + 1) for i in range(len(returns))]
    run = {"finished": finished, "curve": {"env_steps": steps, "true_return": returns}}
    if finished:
        run |= {
            "true_return_final": returns[-1],
            "env_steps": steps[-1],
            "env_steps_per_s": steps_per_cpu_s,
            "env_steps_per_cpu_s": steps_per_cpu_s,
            "reward_update_s": 0.0,
        }
    return run


def test_report_compares_a_stopped_run_at_the_last_evaluation_both_reached():
    runs = {
        "oracle": {0: _run([100.0, 200.0, 400.0, 800.0], finished=True)},
        "r4": {0: _run([50.0, 100.0, 100.0], finished=False)},
        "rbrl": {0: _run([100.0, 100.0, 200.0, 400.0], finished=True, steps_per_cpu_s=90.0)},
    }
    table = SWEEP._compare(runs)
    stopped = table["r4"]
    assert stopped["finished_seeds"] == [] and stopped["policy_recovery_final"] is None
    assert stopped["policy_recovery_last_common_eval"]["mean"] == pytest.approx(100 / 400)
    assert stopped["last_common_eval_step"] == [75_000]
    assert stopped["policy_recovery_curve_mean"]["mean"] == pytest.approx(250 / 700)
    done = table["rbrl"]
    assert done["policy_recovery_final"]["mean"] == pytest.approx(0.5)
    assert done["overhead_steps_per_cpu_s_ratio"]["mean"] == pytest.approx(0.9)
    row = SWEEP.markdown({"envs": {"e": {"summary": table}}}, "e").splitlines()
    assert "| r4 | 100 at 75k | - |" in row[3]
