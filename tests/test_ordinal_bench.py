"""The ordinal benchmark: result layout, seeding, protocol and the Typer command (smoke size)."""

import json
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from ratingrl.cli import app
from ratingrl.experiments.ordinal_bench import (
    METHODS,
    OrdinalBenchConfig,
    format_table,
    run_ordinal_benchmark,
)

METRICS = {"mae", "accuracy", "kendall_tau", "spearman", "query_tau"}


@pytest.fixture(scope="module")
def quick_result() -> dict:
    return run_ordinal_benchmark(OrdinalBenchConfig.quick(seeds=2), progress=False)


def test_result_has_every_method_and_metric_as_mean_and_std(quick_result: dict) -> None:
    results = quick_result["results"]
    assert list(results) == ["warm_start", *METHODS]
    for method, metrics in results.items():
        assert METRICS <= set(metrics), method
        for name in METRICS:
            mean, std = metrics[name]["mean"], metrics[name]["std"]
            assert std >= 0
            per_seed = [run[name] for run in quick_result["per_seed"][method]]
            assert len(per_seed) == 2 and mean == pytest.approx(sum(per_seed) / 2)
        assert 0 <= metrics["mae"]["mean"] <= 9 and 0 <= metrics["accuracy"]["mean"] <= 1
        assert -1 <= metrics["kendall_tau"]["mean"] <= 1
    assert quick_result["wall_time_s"] > 0
    assert quick_result["config"] == json.loads(json.dumps(quick_result["config"]))
    assert quick_result["config"]["seeds"] == 2 and quick_result["machine"]["nproc"] >= 1


def test_only_the_rmo_method_mutates_answers(quick_result: dict) -> None:
    training = quick_result["grpo_training"]
    assert set(training) == {"grpo_regression", "grpo_ranking", "grpo_joint", "grpo_joint_rmo"}
    for method in ("grpo_regression", "grpo_ranking", "grpo_joint"):
        assert training[method]["mutated_fraction"]["mean"] == 0.0
    # The ranking reward is constant on one-image queries, so some groups are always flat.
    assert training["grpo_ranking"]["zero_variance_fraction"]["mean"] > 0.0


def test_runs_are_reproducible_from_the_seed() -> None:
    cfg = OrdinalBenchConfig.quick(seeds=1, methods=("grpo_joint_rmo",), steps=4)
    a = run_ordinal_benchmark(cfg, progress=False)
    b = run_ordinal_benchmark(cfg, progress=False)
    assert a["per_seed"] == b["per_seed"]
    # The GRPO warm start comes from the cross-entropy baseline, which is added automatically.
    assert set(a["results"]) == {"warm_start", "grpo_joint_rmo"}


def test_config_rejects_unknown_methods() -> None:
    with pytest.raises(ValueError, match="unknown methods"):
        OrdinalBenchConfig(methods=("grpo_magic",))


def test_format_table_lists_methods_with_mean_and_std(quick_result: dict) -> None:
    table = format_table(quick_result).splitlines()
    assert table[0].startswith("| method | mae | accuracy")
    assert len(table) == 2 + len(quick_result["results"])
    assert all("±" in line for line in table[2:])


def test_typer_command_writes_json_and_plot(tmp_path) -> None:
    out = tmp_path / "ordinal.json"
    args = [
        "bench",
        "ordinal",
        "--quick",
        "--seeds",
        "1",
        "--methods",
        "mse,grpo_ranking",
        "--out",
        str(out),
        "--no-progress",
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    assert set(data["results"]) == {"warm_start", "mse", "grpo_ranking"}
    assert data["command"].startswith("ratingrl bench ordinal --seeds 1")
    assert "--quick" in data["command"] and out.with_suffix(".png").stat().st_size > 0
    assert "grpo_ranking" in result.output


def test_command_imports_the_runner_lazily_and_the_runner_never_imports_the_command() -> None:
    """One direction only: config <- runner <- command; the CLI starts without torch."""
    code = (
        "import sys\n"
        "import ratingrl.cli\n"
        "assert 'torch' not in sys.modules, 'the command module imported torch'\n"
        "assert 'ratingrl.experiments.ordinal_bench' not in sys.modules\n"
        "ours = ('ratingrl.experiments', 'ratingrl.cli')\n"
        "for name in [m for m in sys.modules if m.startswith(ours)]:\n"
        "    del sys.modules[name]\n"
        "import ratingrl.experiments.ordinal_bench\n"
        "assert 'ratingrl.cli.bench' not in sys.modules, 'runner imports command'\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
