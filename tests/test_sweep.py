"""Sweeps: spec files checked before anything runs, trials run on a local Ray instance into a
results store, and a sweep started again skips finished trials, resumes a stopped one from its
checkpoint and records a failing one without stopping the others."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from ratingrl.cli import app
from ratingrl.experiments.results import ResultStore
from ratingrl.experiments.sweep import SweepOptions, plan, run_sweep
from ratingrl.experiments.sweep_spec import SpecError, load_spec, spec_from_dict

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((ROOT / "examples" / "sweeps").glob("*.toml"))
runner = CliRunner()


@pytest.fixture(scope="module")
def local_ray():
    """One local Ray instance (2 CPUs) for the module: a sweep joins it rather than start its
    own, which saves the ~4 s of starting and stopping Ray per test."""
    ray = pytest.importorskip("ray")
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


def _base(config) -> dict:
    """A RunConfig as the [base] table of a spec (what TOML would give: lists, no None)."""
    fields = {k: v for k, v in config.to_dict().items() if k not in ("version", "seed")}
    return {k: list(v) if isinstance(v, tuple) else v for k, v in fields.items() if v is not None}


# -- specs -----------------------------------------------------------------------------------
@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_every_example_spec_parses_and_every_trial_passes_the_checks(path):
    spec = load_spec(path)
    trials = spec.trials()  # every RunConfig built and validated
    assert trials and len({t.trial_id for t in trials}) == len(trials)
    assert all(t.trial_id.startswith(f"{spec.name}/") for t in trials)
    assert trials[0].seed == spec.seeds[0] and trials[-1].seed == spec.seeds[-1]  # seed-major


def test_a_track_spec_is_the_tracks_configuration():
    from ratingrl.experiments.tracks import run_config

    spec = spec_from_dict({"track": "sac300k", "seeds": 2, "grid": {"method": ["oracle", "r4"]}})
    trials = spec.trials()
    assert len(trials) == 2 * 2 * 2  # envs x methods x seeds
    last = trials[-1]
    assert last.overrides == {"env_id": "dmc/cheetah-run", "method": "r4"} and last.seed == 1
    assert last.config == run_config("sac300k", "dmc/cheetah-run", "r4", 1).to_dict()


def test_variants_are_crossed_with_the_grid():
    spec = spec_from_dict(
        {
            "base": {"env_id": "Pendulum-v1"},
            "grid": {"method": ["r4", "rbrl"]},
            "variants": [{"budget": 40}, {"budget": 80, "per_round": 20}],
            "seeds": [3],
        }
    )
    ids = [t.trial_id for t in spec.trials()]
    assert ids == [
        "sweep/budget=40,method=r4,seed=3",
        "sweep/budget=40,method=rbrl,seed=3",
        "sweep/budget=80,per_round=20,method=r4,seed=3",
        "sweep/budget=80,per_round=20,method=rbrl,seed=3",
    ]
    assert spec.trials()[2].config["per_round"] == 20


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"base": {"nets": 3}}, "unknown configuration fields \\['nets'\\]"),
        ({"grid": {"method": "r4"}}, "grid.method must be a non-empty list"),
        ({"base": {"seed": 1}}, "top-level `seeds`"),
        ({"seeds": 0}, "seeds must be a count"),
        ({"kind": "tuning"}, "kind must be one of"),
        ({"track": "nope"}, "unknown track 'nope'"),
        ({"stores": "x"}, "unknown keys \\['stores'\\]"),
        ({"resources": {"cpus_per_trial": 0}}, "cpus_per_trial must be > 0"),
        ({"grid": {"method": ["r4"]}, "variants": [{"method": "bt"}]}, "set in both"),
        ({"base": {"algo": "dqn"}}, "unknown algo 'dqn'"),
        ({"kind": "fidelity", "base": {"trainer": {"epoch": 3}}}, "unknown fields \\['epoch'\\]"),
    ],
)
def test_a_bad_spec_fails_before_anything_runs_naming_the_key(data, message):
    with pytest.raises(SpecError, match=message):
        spec_from_dict(data).trials()


def test_sweep_plan_lists_the_trials_without_running_them(tmp_path):
    store = tmp_path / "store"
    shown = runner.invoke(
        app, ["sweep", str(ROOT / "examples/sweeps/quick.toml"), "--store", str(store), "--plan"]
    )
    assert shown.exit_code == 0, shown.output
    assert "6 trials" in shown.output and shown.output.count("pending") == 6
    assert not store.exists()
    bad = tmp_path / "bad.toml"
    bad.write_text("[grid]\nmethod = 'r4'\n")
    result = runner.invoke(app, ["sweep", str(bad)])
    assert result.exit_code == 2 and "grid.method must be a non-empty list" in result.output


# -- running (Ray: ~25 s with its start; `make test`, which CI runs, includes slow tests) ------
@pytest.mark.slow
def test_a_sweep_resumes_a_stopped_trial_records_a_failure_and_indexes_every_trial(
    tmp_path, tiny_config, crashing, local_ray
):
    from ratingrl.feedback.io import load_rated
    from ratingrl.feedback.sources import TeacherSource
    from ratingrl.rl.builders import make_teacher_source
    from ratingrl.rl.config import RunConfig
    from ratingrl.rl.run import Run

    spec = spec_from_dict(
        {
            "name": "tiny",
            "base": _base(tiny_config),
            "variants": [
                {"method": "oracle"},
                {"method": "rbrl"},
                {"method": "rbrl", "env_id": "NoSuchEnv-v0"},
            ],
        }
    )
    oracle, rbrl, broken = spec.trials()
    results = ResultStore(tmp_path / "store")
    # rbrl was stopped in its second round of ratings (after a checkpoint), as by a kill
    folder = results.trial_dir(rbrl.trial_id)
    teacher = make_teacher_source(tiny_config)
    dies = crashing(TeacherSource, at_round=2)(teacher.teacher, teacher.rng)
    with pytest.raises(RuntimeError, match="stopped in round 2"):
        Run.create(RunConfig.from_dict(rbrl.config), folder, source=dies, progress=False).learn()
    before = load_rated(folder / "feedback.parquet")
    assert [status for _, status in plan(spec, results)] == ["pending", "stopped", "pending"]

    outcome = run_sweep(spec, results.root, SweepOptions(progress=False))
    assert sorted(outcome.finished) == sorted([oracle.trial_id, rbrl.trial_id])
    assert list(outcome.failed) == [broken.trial_id]
    assert "NoSuchEnv" in outcome.failed[broken.trial_id]
    # the stopped trial continued from its checkpoint with its first 10 labels kept
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["labels_used"] == 20 and summary["env_steps"] == tiny_config.total_steps
    assert (folder / "progress.resume1.csv").exists()
    after = load_rated(folder / "feedback.parquet")
    np.testing.assert_array_equal(after.ratings[:10], before.ratings)
    # the failure is kept in the trial's folder and in the index
    assert "Traceback" in (results.trial_dir(broken.trial_id) / "error.txt").read_text()
    assert "NoSuchEnv" in results.meta(broken.trial_id)["error"]
    rows = {r["trial_id"]: r for r in results.rows()}
    assert [rows[t.trial_id]["status"] for t in (oracle, rbrl, broken)] == [
        "finished",
        "finished",
        "failed",
    ]
    assert rows[oracle.trial_id]["labels"] == 0 and rows[rbrl.trial_id]["labels"] == 20
    assert rows[rbrl.trial_id]["true_return_final"] == summary["true_return_final"]["mean"]
    assert "NoSuchEnv" in rows[broken.trial_id]["error"]
    assert rows[oracle.trial_id]["method"] == "oracle" and rows[oracle.trial_id]["seed"] == 0
    curve = results.curve(rbrl.trial_id)
    assert curve["env_steps"][-1] == tiny_config.total_steps

    # started again: the finished trials are skipped (untouched), the failed one is not retried
    stamp = (folder / "summary.json").stat().st_mtime_ns
    again = run_sweep(spec, results.root, SweepOptions(progress=False, retry_failed=False))
    assert sorted(again.skipped) == sorted([oracle.trial_id, rbrl.trial_id])
    assert again.finished == [] and list(again.failed) == [broken.trial_id]
    assert (folder / "summary.json").stat().st_mtime_ns == stamp


def test_a_trial_folder_of_another_configuration_is_not_overwritten(tmp_path, tiny_config):
    spec = spec_from_dict({"name": "t", "base": _base(tiny_config), "grid": {"method": ["bt"]}})
    (trial,) = spec.trials()
    results = ResultStore(tmp_path / "store")
    results.trial_dir(trial.trial_id).mkdir(parents=True)
    other = {**trial.config, "total_steps": 1234}
    (results.trial_dir(trial.trial_id) / "config.json").write_text(json.dumps(other))
    assert [status for _, status in plan(spec, results)] == ["conflict"]
    outcome = run_sweep(spec, results.root, SweepOptions(progress=False))  # Ray never starts
    assert "another configuration (total_steps: 1234 -> 600)" in outcome.failed[trial.trial_id]
    assert json.loads((results.trial_dir(trial.trial_id) / "config.json").read_text()) == other


@pytest.mark.slow
def test_a_fidelity_sweep_builds_its_pool_once_and_scores_each_trial(tmp_path, local_ray):
    spec = spec_from_dict(
        {
            "name": "fid",
            "kind": "fidelity",
            "seeds": [0],
            "base": {
                "env_id": "Pendulum-v1",
                "ratings": 20,
                "cache_dir": str(tmp_path / "cache"),
                "pool": {"horizon": 10, "stride": 5, "train_steps": [0], "max_episode_steps": 50},
                "trainer": {"epochs": 3, "net": {"hidden": [16, 16], "ensemble_size": 1}},
            },
            "grid": {"method": ["r4", "bt"]},
        }
    )
    outcome = run_sweep(spec, tmp_path / "store", SweepOptions(progress=False))
    assert sorted(outcome.finished) == ["fid/method=bt,seed=0", "fid/method=r4,seed=0"]
    rows = ResultStore(tmp_path / "store").rows(kind="fidelity")
    assert {r["method"] for r in rows} == {"r4", "bt"}
    assert all(-1 <= r["kendall_tau"] <= 1 and r["ratings"] == 20 for r in rows)
    assert len(list((tmp_path / "cache").rglob("*.parquet"))) == 1


@pytest.mark.slow
def test_the_quick_example_runs_and_reports(tmp_path):
    """examples/sweeps/quick.toml end to end through the command line, its own Ray instance
    (about two minutes on two cores)."""
    store, out = tmp_path / "store", tmp_path / "report"
    spec = str(ROOT / "examples/sweeps/quick.toml")
    result = runner.invoke(app, ["sweep", spec, "--store", str(store), "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "6 finished now" in result.output
    assert runner.invoke(app, ["report", str(store), "--out", str(out)]).exit_code == 0
    text = (out / "report.md").read_text()
    assert "## Policies: sweep `quick`" in text and "| r4 | 2 |" in text
    again = runner.invoke(app, ["sweep", spec, "--store", str(store), "--no-progress"])
    assert again.exit_code == 0 and "0 finished now, 6 before" in again.output
