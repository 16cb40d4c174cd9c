"""The ``ratingrl`` command end to end on a tiny Pendulum pool (built once per test session)."""

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from ratingrl.cli import app
from ratingrl.feedback.io import load_rated, save_rated
from ratingrl.rewards.nets import RewardEnsemble

runner = CliRunner()
POOL = ["--env", "Pendulum-v1", "--pool-steps", "0,2048", "--pool-episodes", "3",
        "--pool-max-steps", "200"]  # fmt: skip


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    path = tmp_path_factory.mktemp("cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RATINGRL_CACHE", str(path))
        result = runner.invoke(app, ["pool", *POOL])
        assert result.exit_code == 0, result.output
        assert "segments of 50 steps" in result.output
        yield path


@pytest.fixture
def env_cache(cache, monkeypatch):
    monkeypatch.setenv("RATINGRL_CACHE", str(cache))
    return cache


def run(*args):
    result = runner.invoke(app, list(args))
    return result.exit_code, result.output


def test_help_of_every_command():
    for command in (["--help"], ["pool", "--help"], ["rate", "--help"], ["reward", "train",
                    "--help"], ["bench", "fidelity", "--help"], ["plot", "--help"],
                    ["demo", "--help"]):  # fmt: skip
        code, out = run(*command)
        assert code == 0 and "Usage" in out


def test_rate_then_train_a_reward(env_cache, tmp_path):
    data = tmp_path / "rated.parquet"
    code, out = run("rate", *POOL, "--ratings", "60", "--classes", "3", "--out", str(data))
    assert code == 0, out
    rated = load_rated(data)
    assert len(rated) == 60 and rated.scale.n == 3 and rated.source["env_id"] == "Pendulum-v1"
    assert rated.source["type"] == "rating"
    model = tmp_path / "reward.pt"
    code, out = run("reward", "train", "--data", str(data), "--out", str(model), "--method",
                    "rbrl", "--epochs", "3", "--hidden", "16")  # fmt: skip
    assert code == 0, out
    loaded, extra = RewardEnsemble.load(model)
    assert extra["method"] == "rbrl" and len(extra["history"]) >= 1
    log = (tmp_path / "reward.history.csv").read_text().splitlines()
    assert log[0] == "epoch,loss,val_score,val_accuracy" and len(log) == 1 + len(extra["history"])
    # a method's own settings in brackets, as in `bench fidelity`; unknown ones are named
    tuned = tmp_path / "tuned.pt"
    code, out = run("reward", "train", "--data", str(data), "--out", str(tuned), "--method",
                    "rbrl[kappa=10]", "--epochs", "2", "--hidden", "16")  # fmt: skip
    assert code == 0, out
    assert RewardEnsemble.load(tuned)[1]["method"] == "rbrl[kappa=10]"
    code, out = run("reward", "train", "--data", str(data), "--out", str(tuned), "--method",
                    "rbrl[kapa=10]", "--epochs", "2")  # fmt: skip
    assert code == 2 and "kapa" in out
    # an existing dataset is never overwritten without --overwrite
    before = data.read_bytes()
    code, out = run("rate", *POOL, "--ratings", "10", "--out", str(data))
    assert code == 2 and "exists" in out and data.read_bytes() == before


def test_bad_input_is_reported_before_work(env_cache, tmp_path):
    code, out = run("bench", "fidelity", "--env", "NoSuchEnv-v9", "--out", str(tmp_path / "x"))
    assert code == 2 and "unknown environment 'NoSuchEnv-v9'" in out
    code, out = run("bench", "fidelity", *POOL, "--methods", "r4,magic")
    assert code == 2 and "unknown method 'magic'" in out
    code, out = run("bench", "fidelity", *POOL, "--methods", "r4[margin=3]")
    assert code == 2 and "method 'r4' has no setting ['margin']" in out
    code, out = run("bench", "fidelity", *POOL, "--noise-model", "bogus")
    assert code == 2 and "noise_model 'bogus' not in ['adjacent', 'uniform']" in out
    code, out = run("bench", "fidelity", *POOL, "--ratings", "ten")
    assert code == 2 and "--ratings takes comma-separated whole numbers" in out
    code, out = run("rate", *POOL, "--ratings", "100000", "--out", str(tmp_path / "r.parquet"))
    assert code == 2 and "exceeds the pool" in out
    foreign = tmp_path / "foreign.parquet"
    foreign.write_bytes(b"not parquet")
    code, out = run("reward", "train", "--data", str(foreign), "--out", str(tmp_path / "m.pt"))
    assert code == 2 and "not a readable Parquet file" in out
    assert not (tmp_path / "m.pt").exists()
    # a rated dataset with a single class cannot train R4
    data = tmp_path / "rated.parquet"
    assert run("rate", *POOL, "--ratings", "30", "--out", str(data))[0] == 0
    rated = load_rated(data)
    from dataclasses import replace

    save_rated(replace(rated, ratings=np.zeros(len(rated), dtype=int)), data)
    code, out = run("reward", "train", "--data", str(data), "--out", str(tmp_path / "m.pt"))
    assert code == 2 and "at least two different ratings" in out


@pytest.mark.slow
def test_fidelity_bench_report_and_plot(env_cache, tmp_path):
    out = tmp_path / "fidelity.json"
    variant = "r4[norm_penalty=0.1,regularization_strength=0.5]"
    args = ["bench", "fidelity", *POOL, "--methods", f"r4,rbrl,bt,{variant}", "--ratings", "30,50",
            "--classes", "3", "--seeds", "2", "--epochs", "3", "--hidden", "16"]  # fmt: skip
    code, text = run(*args, "--workers", "1", "--out", str(out))
    assert code == 0, text
    report = json.loads(out.read_text())
    assert report["config"]["env_id"] == "Pendulum-v1"
    assert report["config"]["ratings"] == [30, 50]
    assert [c["ratings"] for c in report["conditions"]] == [30, 50]
    for condition in report["conditions"]:
        assert list(condition["results"]) == ["r4", "rbrl", "bt", variant]
        for method in condition["results"]:
            entry = condition["results"][method]
            assert set(entry) >= {"kendall_tau", "spearman", "label_accuracy", "wall_time_s"}
            assert -1 <= entry["kendall_tau"]["mean"] <= 1 and entry["kendall_tau"]["n"] == 2
    assert "results" not in report  # two conditions: read them under 'conditions'
    # two worker processes give exactly the same numbers
    parallel = tmp_path / "parallel.json"
    code, text = run(*args, "--workers", "2", "--out", str(parallel))
    assert code == 0, text
    key = lambda r: (r["method"], r["ratings"], r["seed"])  # noqa: E731
    a = sorted(report["runs"], key=key)
    b = sorted(json.loads(parallel.read_text())["runs"], key=key)
    assert [r["kendall_tau"] for r in a] == pytest.approx([r["kendall_tau"] for r in b])
    figure = tmp_path / "fig.png"
    code, text = run("plot", str(out), "--out", str(figure))
    assert code == 0, text
    assert figure.stat().st_size > 10_000
    code, text = run("plot", str(foreign_json(tmp_path)), "--out", str(figure))
    assert code == 2 and "not a fidelity report" in text


def foreign_json(tmp_path):
    path = tmp_path / "other.json"
    path.write_text(json.dumps({"hello": 1}))
    return path
