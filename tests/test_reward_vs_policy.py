"""Which reward figure predicts policy recovery: runs written by hand, rewards of known quality.

The pool is synthetic (true reward ``obs[..., 0] - 0.1 |a|^2``, no simulator states, so EPIC is
the benchmark's named fallback) and cached where the fidelity benchmark of Pendulum-v1 looks for
its pool; each run's reward is linear with weights we choose, so which reward is better is known.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import stats
from typer.testing import CliRunner

from ratingrl.cli import app
from ratingrl.experiments.fidelity import FidelityConfig
from ratingrl.experiments.reward_vs_policy import (
    RewardVsPolicyError,
    correlation,
    reward_vs_policy,
)
from ratingrl.feedback.io import save_segments
from ratingrl.feedback.pool import pool_path
from ratingrl.rewards.nets import RewardEnsemble, RewardNetConfig

ENV = "Pendulum-v1"  # a real env (3-d observations, 1-d actions); the pool itself is synthetic
GOOD, NOISY, BAD = (1.0, 0.0, 0.0), (1.0, 3.0, 0.0), (-1.0, 0.0, 0.0)


@pytest.fixture
def cache(tmp_path, linear_segments) -> Path:
    spec = FidelityConfig(env_id=ENV).pool
    path = pool_path(spec, tmp_path / "cache")
    save_segments(linear_segments(200, horizon=10, obs_dim=3, act_dim=1), path, spec=spec.to_dict())
    return tmp_path / "cache"


def write_run(folder: Path, method: str, seed: int, final: float, weights=None, sweep="sw",
              env=ENV, algo="sac", steps=1000, own=None) -> Path:  # fmt: skip
    """A finished run folder; ``weights`` on the observation make its linear reward, ``own``
    is the last tau the run measured on the segments it had rated."""
    folder.mkdir(parents=True)
    config = {"env_id": env, "method": method, "seed": seed, "algo": algo, "total_steps": steps}
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "trial.json").write_text(json.dumps({"sweep": sweep, "kind": "policy"}))
    summary = {"true_return_final": {"mean": final}}
    if own is not None:
        summary["reward_fidelity"] = [{"tau_all": 0.0}, {"tau_all": own}]
    (folder / "summary.json").write_text(json.dumps(summary))
    if weights is not None:
        model = RewardEnsemble(3, 1, RewardNetConfig(hidden=(), ensemble_size=1, output="none"))
        with torch.no_grad():
            model.weights[0].copy_(torch.tensor([*weights, 0.0]).reshape(1, 4, 1))
            model.biases[0].zero_()
        model.save(folder / "reward_model.pt")
    return folder


def trial(store: Path, name: str) -> Path:
    return store / "trials" / "sw" / name


def test_a_better_reward_scores_higher_and_recovery_is_against_the_right_oracle(tmp_path, cache):
    store = tmp_path / "store"
    write_run(trial(store, "oracle0"), "oracle", 0, 1000.0)
    write_run(trial(store, "oracle1"), "oracle", 1, 500.0)
    # an oracle of the same env and seed but another sweep, and one with another step budget
    write_run(tmp_path / "other" / "o", "oracle", 0, 50.0, sweep="other")
    write_run(trial(store, "oracle0_long"), "oracle", 0, 10.0, steps=5000)
    write_run(trial(store, "good"), "r4", 0, 900.0, GOOD, own=0.9)
    write_run(trial(store, "noisy"), "rbrl", 1, 300.0, NOISY, own=0.5)
    write_run(trial(store, "bad"), "bt", 0, 100.0, BAD, own=0.95)  # fooled its own teacher
    write_run(trial(store, "orphan"), "r4", 7, 800.0, GOOD)  # no oracle of seed 7
    write_run(trial(store, "untrained"), "r4", 0, 50.0)  # finished, but learned no reward
    (trial(store, "running")).mkdir()  # not started: passed over
    report = reward_vs_policy([store, tmp_path / "other"], reps=200, cache_dir=str(cache))

    rows = {Path(r["folder"]).name: r for r in report["runs"]}
    assert set(rows) == {"good", "noisy", "bad", "orphan", "untrained"}
    assert report["unfinished_passed_over"] == 1
    assert rows["good"]["kendall_tau"] > rows["noisy"]["kendall_tau"] > rows["bad"]["kendall_tau"]
    assert rows["good"]["epic"] < rows["noisy"]["epic"] < rows["bad"]["epic"]
    assert rows["bad"]["kendall_tau"] < 0 and rows["good"]["kendall_tau"] > 0.8
    assert rows["good"]["epic_estimator"] == "pearson_uncanonicalised"  # no simulator states
    assert rows["good"]["recovery"] == pytest.approx(0.9)
    assert rows["noisy"]["recovery"] == pytest.approx(300 / 500)  # seed 1's oracle
    assert rows["bad"]["oracle"].endswith("oracle0")
    assert rows["orphan"]["recovery"] is None and rows["orphan"]["note"] == "no matching oracle"
    assert rows["orphan"]["kendall_tau"] > 0.8  # scored all the same, just not correlated
    assert rows["untrained"]["note"] == "no reward model" and "kendall_tau" not in rows["untrained"]
    corr = {c["figure"]: c for c in report["correlations"] if c["scope"] == "all"}
    assert corr["kendall_tau"]["n"] == corr["-epic"]["n"] == 3
    assert corr["kendall_tau"]["spearman"] == pytest.approx(1.0)
    assert corr["-epic"]["spearman"] == pytest.approx(1.0)
    assert rows["bad"]["tau_own"] == 0.95 and rows["orphan"]["tau_own"] is None
    assert corr["tau_own"]["n"] == 3 and corr["tau_own"]["spearman"] == pytest.approx(-0.5)


def test_a_folder_of_runs_finds_its_oracle_in_a_store_of_the_same_sweep(tmp_path, cache):
    write_run(trial(tmp_path / "store", "oracle"), "oracle", 0, 800.0)
    write_run(tmp_path / "old" / "r4", "r4", 0, 200.0, GOOD)
    report = reward_vs_policy([tmp_path / "old", tmp_path / "store"], reps=50, cache_dir=str(cache))
    (row,) = report["runs"]
    assert row["recovery"] == pytest.approx(0.25)
    assert report["correlations"][0]["spearman"] is None  # one run: nothing to correlate


def test_the_correlation_and_its_interval_are_scipys_on_the_same_numbers():
    rng = np.random.default_rng(3)
    x = rng.normal(size=12)
    y = x + rng.normal(size=12)
    out = correlation(x, y, reps=500, seed=4)
    assert out["spearman"] == pytest.approx(stats.spearmanr(x, y).statistic)
    ref = stats.bootstrap(
        (x, y), lambda a, b: stats.spearmanr(a, b).statistic, paired=True, vectorized=False,
        n_resamples=500, method="percentile", rng=np.random.default_rng(4),
    )  # fmt: skip
    assert out["undefined_resamples"] == 0.0
    assert out["ci95"] == pytest.approx(list(ref.confidence_interval))
    assert out["ci95"][0] < out["spearman"] < out["ci95"][1]


def test_within_environments_an_easier_environment_does_not_count_as_agreement():
    # env 0 is easy (high figures, high recovery), env 1 hard; within each the figure is backwards
    figure, recovery = [0.9, 0.8, 0.7, 0.3, 0.2, 0.1], [0.7, 0.8, 0.9, 0.1, 0.2, 0.3]
    assert correlation(figure, recovery, 100, 0)["spearman"] == pytest.approx(1 - 96 / 210)
    within = correlation(figure, recovery, 300, 0, groups=[0, 0, 0, 1, 1, 1])
    assert within["spearman"] == pytest.approx(-1.0) and within["ci95"][1] <= 0
    x, y = np.random.default_rng(0).normal(size=(2, 9))
    one = correlation(x, y, 100, 0, groups=[5] * 9)  # one environment: plain Spearman
    assert one["spearman"] == pytest.approx(stats.spearmanr(x, y).statistic)


def test_resamples_without_a_rank_correlation_are_counted_not_allowed_to_void_the_interval():
    out = correlation([0.1, 0.1, 0.1, 0.1, 0.2], [1.0, 3.0, 2.0, 4.0, 5.0], reps=400, seed=0)
    assert 0.2 < out["undefined_resamples"] < 0.45  # the last run missed: (4/5)^5 = 0.33
    assert out["ci95"] is not None and -1 <= out["ci95"][0] <= out["ci95"][1] <= 1
    few = correlation([0.1, 0.2, 0.3, 0.4], [1.0, 3.0, 2.0, 4.0], reps=400, seed=0)
    assert few["spearman"] == pytest.approx(0.8) and few["ci95"] is None  # 4 runs: no interval


def test_bad_input_is_a_one_line_error_naming_what_is_wrong(tmp_path, cache):
    untrained = write_run(tmp_path / "untrained", "r4", 0, 10.0)
    with pytest.raises(RewardVsPolicyError, match=r"untrained has no reward model"):
        reward_vs_policy([untrained], cache_dir=str(cache))
    unknown = write_run(tmp_path / "unknown", "r4", 0, 10.0, GOOD, env="NoSuchEnv-v9")
    with pytest.raises(RewardVsPolicyError, match="unknown environment 'NoSuchEnv-v9'"):
        reward_vs_policy([unknown], cache_dir=str(cache))
    fine = write_run(tmp_path / "fine", "r4", 0, 10.0, GOOD)
    with pytest.raises(RewardVsPolicyError, match=r"ratingrl pool --env Pendulum-v1"):
        reward_vs_policy([fine], cache_dir=str(tmp_path / "empty"))
    with pytest.raises(RewardVsPolicyError, match="holds no runs"):
        reward_vs_policy([tmp_path / "cache"], cache_dir=str(cache))
    wide = write_run(tmp_path / "wide", "r4", 0, 10.0)
    RewardEnsemble(5, 1, RewardNetConfig(hidden=(4,))).save(wide / "reward_model.pt")
    with pytest.raises(RewardVsPolicyError, match=r"dims \(5, 1\) but the pool of Pendulum-v1"):
        reward_vs_policy([wide], cache_dir=str(cache))


def test_the_command_prints_both_tables_writes_json_and_fails_in_one_line(
    tmp_path, cache, monkeypatch
):
    monkeypatch.setenv("RATINGRL_CACHE", str(cache))
    store = tmp_path / "store"
    write_run(trial(store, "oracle0"), "oracle", 0, 1000.0)
    for i, (weights, final) in enumerate([(GOOD, 900.0), (NOISY, 500.0), (BAD, 20.0)]):
        write_run(trial(store, f"run{i}"), "r4", 0, final, weights, sweep="sw")
    out = tmp_path / "res" / "rvp.json"
    runner = CliRunner()
    result = runner.invoke(app, ["bench", "reward-vs-policy", str(store), "--out", str(out),
                                 "--reps", "100"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "Spearman correlation with recovery" in result.output and "-epic" in result.output
    report = json.loads(out.read_text())
    assert [round(r["recovery"], 2) for r in report["runs"]] == [0.9, 0.5, 0.02]
    bad = runner.invoke(app, ["bench", "reward-vs-policy", str(tmp_path / "nowhere")])
    assert bad.exit_code == 2 and "is not a run folder" in bad.output
    assert "Traceback" not in bad.output and len(bad.output.strip().splitlines()) == 1
