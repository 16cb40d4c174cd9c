"""The results store: the index read back from trial folders (typed, filtered from Python and
from ``ratingrl results``), and ``ratingrl report``: tables, figures and claims computed from
the store alone, the same every time."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from ratingrl.cli import app
from ratingrl.experiments.claims import load_claims, measure_claim, verdict
from ratingrl.experiments.report import write_report
from ratingrl.experiments.results import ResultStore, matches, parse_where
from ratingrl.experiments.stats import Interval

runner = CliRunner()
ENVS = ("dmc/walker-walk", "dmc/cheetah-run")
# final true return per (method, env) for seeds 0, 1, 2: r4 recovers 0.9 of the oracle
RETURNS = {"oracle": 500.0, "r4": 450.0, "rbrl": 250.0}


def _trial(store: ResultStore, sweep: str, method: str, env: str, seed: int, **extra) -> str:
    """A policy trial folder as a sweep leaves it, with its learning curve."""
    overrides = {"env_id": env, "method": method, **extra.pop("overrides", {})}
    trial_id = f"{sweep}/env_id={env.replace('/', '_')},method={method},seed={seed}"
    meta = {"trial_id": trial_id, "kind": "policy", "sweep": sweep, "env_id": env}
    meta |= {"method": method, "overrides": overrides, "seed": seed, "error": extra.get("error")}
    store.write_meta(trial_id, meta)
    folder = store.trial_dir(trial_id)
    if extra.get("started", True) and not extra.get("error"):
        (folder / "config.json").write_text(json.dumps({"env_id": env, "method": method}))
    if extra.get("finished", True) and not extra.get("error"):
        final = RETURNS[method] * (1 + 0.01 * seed)
        curve = [0.2 * final, final]
        rows = ["eval/env_steps,eval/true_return,eval/learned_return"]
        learned = "" if method == "oracle" else 0.5
        rows += [f"{s},{r},{learned}" for s, r in zip((1, 2), curve, strict=True)]
        (folder / "progress.csv").write_text("\n".join(rows) + "\n")
        summary = {
            "true_return_final": {"mean": final, "std": 5.0},
            "true_return_best": {"mean": final, "std": 5.0},
            "learned_return_final": None if method == "oracle" else {"mean": 0.5, "std": 0.1},
            "labels_used": 0 if method == "oracle" else 100,
            "env_steps": 1000,
            "env_steps_per_s": 100.0,
            "env_steps_per_cpu_s": 100.0 if method == "oracle" else 90.0,
            "reward_update_s": 0.0 if method == "oracle" else 1.0,
            "wall_time_s": 10.0,
        }
        (folder / "summary.json").write_text(json.dumps(summary))
    return trial_id


@pytest.fixture
def store(tmp_path) -> ResultStore:
    """sac300k: oracle, r4, rbrl on two envs x 3 seeds (finished); one stopped r4 trial of
    seed 3, one failed rbrl trial, one pending bt trial."""
    results = ResultStore(tmp_path / "store")
    for method in RETURNS:
        for env in ENVS:
            for seed in range(3):
                _trial(results, "sac300k", method, env, seed)
    _trial(results, "sac300k", "r4", ENVS[0], 3, finished=False)
    _trial(results, "sac300k", "rbrl", ENVS[0], 3, error="EnvError: no such env\nlast line")
    _trial(results, "sac300k", "bt", ENVS[0], 0, started=False, finished=False)
    _trial(results, "other", "r4", ENVS[0], 0, overrides={"budget": 100, "noise": 1e-6})
    results.rebuild()
    return results


def test_the_index_has_a_typed_row_per_trial_folder(store):
    rows = {r["trial_id"]: r for r in store.rows()}
    assert len(rows) == 3 * 2 * 3 + 4
    statuses = [r["status"] for r in rows.values()]
    assert statuses.count("finished") == 19 and statuses.count("failed") == 1
    assert statuses.count("stopped") == 1 and statuses.count("pending") == 1
    r4 = rows["sac300k/env_id=dmc_walker-walk,method=r4,seed=1"]
    assert r4["true_return_final"] == pytest.approx(454.5) and r4["labels"] == 100
    assert isinstance(r4["seed"], int) and r4["env_steps"] == 1000 and r4["error"] is None
    failed = rows["sac300k/env_id=dmc_walker-walk,method=rbrl,seed=3"]
    assert failed["error"] == "last line" and failed["true_return_final"] is None
    other = rows["other/env_id=dmc_walker-walk,method=r4,seed=0"]
    assert other["budget"] == 100 and json.loads(other["overrides"])["budget"] == 100
    table = store.table()
    assert table.num_rows == len(rows) and str(table.schema.field("budget").type) == "int64"


def test_rows_filter_on_any_column_written_as_text_or_typed(store):
    assert len(store.rows(method="r4", status="finished")) == 7
    assert len(store.rows({"env_id": "dmc/cheetah-run"}, method="rbrl")) == 3
    assert [r["seed"] for r in store.rows(budget="100")] == [0]
    assert len(store.rows(noise="1e-6")) == 1 and len(store.rows(noise="0.001")) == 0
    assert len(store.rows(error="none")) == len(store.rows()) - 1
    assert matches([64, 64], "64,64") and not matches(None, "0")
    assert store.status("sac300k/env_id=dmc_walker-walk,method=r4,seed=3", running=[]) == "stopped"
    running = ["sac300k/env_id=dmc_walker-walk,method=r4,seed=3"]
    store.rebuild(running=running)  # what a sweep writes while that trial runs
    assert [r["trial_id"] for r in store.rows(status="running")] == running
    with pytest.raises(ValueError, match="COLUMN=VALUE"):
        parse_where(["method"])


def test_the_index_is_rebuilt_from_the_folders_when_missing(store):
    store.index_path.unlink()
    assert len(store.rows(method="oracle")) == 6 and store.index_path.exists()
    with pytest.raises(FileNotFoundError, match="not a results store"):
        ResultStore(store.root / "nowhere").rows()


def test_curves_are_read_back_from_the_trial_folders(store):
    curve = store.curve("sac300k/env_id=dmc_walker-walk,method=rbrl,seed=0")
    np.testing.assert_array_equal(curve["env_steps"], [1, 2])
    np.testing.assert_allclose(curve["true_return"], [50.0, 250.0])


def test_ratingrl_results_filters_and_prints(store):
    args = ["results", str(store.root), "--where", "method=r4", "--where", "env_id=dmc/walker-walk"]
    shown = runner.invoke(app, [*args, "--json", "--columns", "trial_id,status,seed"])
    assert shown.exit_code == 0, shown.output
    rows = json.loads(shown.output)
    assert sorted(r["seed"] for r in rows) == [0, 0, 1, 2, 3]  # "other" sweep's seed 0 too
    assert {r["status"] for r in rows} == {"finished", "stopped"}
    table = runner.invoke(app, ["results", str(store.root), "--where", "status=failed"])
    assert table.exit_code == 0 and "1 trials" in table.output and "rbrl" in table.output
    bad = runner.invoke(app, ["results", str(store.root), "--where", "method"])
    assert bad.exit_code == 2 and "COLUMN=VALUE" in bad.output
    unknown = runner.invoke(app, ["results", str(store.root), "--columns", "nope"])
    assert unknown.exit_code == 2 and "no column" in unknown.output


# -- the report ----------------------------------------------------------------------------
def test_report_writes_tables_figures_and_claims_and_is_a_function_of_the_store(store, tmp_path):
    out = tmp_path / "report"
    runner_result = runner.invoke(app, ["report", str(store.root), "--out", str(out)])
    assert runner_result.exit_code == 0, runner_result.output
    text = (out / "report.md").read_text()
    data = json.loads((out / "report.json").read_text())
    recovery = data["policy"]["sac300k"]["recovery"]
    # r4 = 0.9 x oracle on every seed: IQM 0.9 with a zero-width interval
    assert recovery["r4"]["iqm"]["point"] == pytest.approx(0.9)
    assert recovery["r4"]["iqm"]["low"] == pytest.approx(0.9) and recovery["r4"]["iqm"]["runs"] == 6
    assert recovery["rbrl"]["iqm"]["point"] == pytest.approx(0.5)
    assert recovery["r4"]["overhead"]["point"] == pytest.approx(0.9)
    assert data["policy"]["sac300k"]["improvement"]["r4 > rbrl"]["point"] == 1.0
    claims = {c["id"]: c for c in data["claims"]}
    assert claims["r4-sac-recovery"]["verdict"] == "yes"  # 0.9 >= 0.90 over the interval
    assert claims["r4-beats-rbrl-sac"]["verdict"] == "yes"
    assert claims["overhead-sac"]["verdict"] == "no"  # 0.9 and 0.9 < 0.95
    assert claims["rbrl-ppo-recovery"]["verdict"] == "not measured"  # no ppo1m sweep here
    assert "| 0.90 [0.90, 0.90]" in text and "## Failed trials" in text
    assert "ratingrl sweep examples/sweeps/sac300k.toml" in text
    figures = ("recovery", "profiles", "curves_dmc_walker-walk", "curves_dmc_cheetah-run")
    for name in (f"sac300k_{f}.png" for f in figures):
        assert (out / name).stat().st_size > 1000 and f"]({name})" in text
    again = tmp_path / "again"
    write_report(store.root, again)
    assert (again / "report.md").read_text() == text
    assert (again / "report.json").read_text() == (out / "report.json").read_text()


def test_a_claim_with_an_interval_across_its_target_is_open(store):
    assert verdict(Interval(0.9, 0.85, 0.95, 3, 1), 0.9) == "open"
    assert verdict(Interval(0.9, 0.91, 0.95, 3, 1), 0.9) == "yes"
    assert verdict(None, 0.9) == "not measured"
    claim = next(c for c in load_claims() if c.id == "r4-sac-recovery")
    only_walker = measure_claim(claim, store.rows(env_id="dmc/walker-walk"), reps=200, seed=0)
    assert only_walker["measured"]["tasks"] == 1 and only_walker["measured"]["runs"] == 3


def test_a_claims_file_of_ones_own(tmp_path, store):
    path = tmp_path / "claims.toml"
    path.write_text(
        '[[claims]]\nid = "mine"\ntext = "rbrl is half the oracle"\nsource = "me"\n'
        'measure = "recovery_iqm"\nsweep = "sac300k"\nmethod = "rbrl"\ntarget = 0.4\n'
        'command = "ratingrl sweep my.toml"\n'
    )
    (claim,) = load_claims(path)
    assert measure_claim(claim, store.rows(), reps=200, seed=0)["verdict"] == "yes"
    path.write_text('[[claims]]\nid = "bad"\nmeasure = "vibes"\n')
    with pytest.raises(ValueError, match="bad"):
        load_claims(path)


def test_fidelity_trials_get_their_tables(tmp_path):
    results = ResultStore(tmp_path / "store")
    for method, tau in (("r4", 0.9), ("rbrl", 0.8)):
        for seed in range(2):
            trial_id = f"fid/method={method},ratings=100,seed={seed}"
            meta = {"trial_id": trial_id, "kind": "fidelity", "sweep": "fid", "seed": seed}
            meta |= {"env_id": "HalfCheetah-v5", "method": method, "overrides": {"method": method}}
            results.write_meta(trial_id, meta)
            row = {"method": method, "ratings": 100, "classes": 4, "noise": 0.0, "seed": seed}
            row |= {"kendall_tau": tau + 0.01 * seed, "spearman": tau, "label_accuracy": 0.5}
            row |= {"epic": 0.3}
            summary = json.dumps(row | {"wall_time_s": 1.0})
            (results.trial_dir(trial_id) / "summary.json").write_text(summary)
    results.rebuild()
    assert results.rows(method="r4")[0]["kendall_tau"] == pytest.approx(0.9)
    assert results.rows(method="r4")[0]["epic"] == pytest.approx(0.3)  # indexed beside tau
    write_report(results.root, tmp_path / "out", reps=200)
    text = (tmp_path / "out" / "report.md").read_text()
    assert "| 100 | 4 | 0 | **0.905 ± 0.005** | 0.805 ± 0.005 |" in text
    assert (tmp_path / "out" / "fid_fidelity.png").exists()
    assert Path(tmp_path / "out" / "report.json").exists()


def test_the_report_shows_each_runs_final_interval_and_its_reward_on_its_own_segments(tmp_path):
    results = ResultStore(tmp_path / "store")
    oracle = _trial(results, "sac300k", "oracle", ENVS[0], 0)
    r4 = _trial(results, "sac300k", "r4", ENVS[0], 0)
    for trial_id in (oracle, r4):
        path = results.trial_dir(trial_id) / "summary.json"
        summary = json.loads(path.read_text())
        summary["true_return_final"] |= {"ci95": [400.0, 520.0], "episodes": [460.0] * 10}
        if trial_id == r4:  # four updates: the previous reward ranks new segments worse late
            taus = [None, 0.8, 0.4, 0.2]
            summary["reward_fidelity"] = [
                {"tau_new_before": t, "tau_all": 0.7, "tau_labels": 0.9, "classes_used": 6}
                for t in taus
            ]
        path.write_text(json.dumps(summary))
    results.rebuild()
    text = (write_report(results.root, tmp_path / "report")).read_text()
    assert "| dmc/walker-walk | oracle | 0 | 10 | 500 [400, 520] |" in text
    assert "| dmc/walker-walk | r4 | 0 | 10 | 450 [400, 520] |" in text
    # early = mean of the first half of the defined values (0.8), late = the rest (0.4, 0.2)
    assert "| dmc/walker-walk | r4 | 0 | 4 | 0.80 | 0.30 | 0.70 | 0.90 | 6 |" in text
    assert "| dmc/walker-walk | oracle | 0 | 4" not in text
