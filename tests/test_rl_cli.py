"""``ratingrl train``: a short oracle run, bad input, resume refusal."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from ratingrl.cli import app

runner = CliRunner()
SMALL = ["--env", "Pendulum-v1", "--net-arch", "16", "--eval-episodes", "1", "--no-progress"]


@pytest.mark.slow
def test_cli_oracle_run_and_bad_input(tmp_path):
    out = tmp_path / "run"
    args = ["train", "--method", "oracle", "--algo", "ppo", "--steps", "64", "--n-steps", "64"]
    result = runner.invoke(app, [*args, *SMALL, "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert json.loads((out / "summary.json").read_text())["env_steps"] == 64
    again = runner.invoke(app, [*args, *SMALL, "--out", str(out)])
    assert again.exit_code == 2 and "not empty" in again.output
    bad = runner.invoke(app, ["train", "--algo", "a2c", *SMALL, "--out", str(tmp_path / "x")])
    assert bad.exit_code == 2 and "unknown algo" in bad.output
    budget = runner.invoke(
        app,
        [
            "train",
            "--steps",
            "1000",
            "--rating-range",
            "-300,0",
            "--schedule-unit",
            "10000",
            *SMALL,
            "--out",
            str(tmp_path / "y"),
        ],
    )
    assert budget.exit_code == 2 and "the run has only 1000" in budget.output
    missing = runner.invoke(app, ["train", "--resume", str(tmp_path / "nothing")])
    assert missing.exit_code == 2 and "no config.json" in missing.output
    pairs = runner.invoke(
        app, ["train", "--method", "bt", "--selector", "stratified", *SMALL, "--out", str(out)]
    )
    assert pairs.exit_code == 2 and "preference pairs" in pairs.output
    coarse = ["--classes", "4", "--coarse-classes", "3", "--rating-range", "-300,0"]
    dyn = runner.invoke(app, ["train", *coarse, *SMALL, "--out", str(tmp_path / "z")])
    assert dyn.exit_code == 2 and "coarse-classes 3" in dyn.output


def test_cli_passes_the_preference_budget_on(tmp_path):
    """--preference-budget reaches the run config: bt with pairs besides is refused by name."""
    args = ["train", "--method", "bt", "--preference-budget", "10", "--preference-weight", "0.5"]
    result = runner.invoke(app, [*args, *SMALL, "--out", str(tmp_path / "x")])
    assert result.exit_code == 2 and "preference_budget=10" in result.output
    assert not (tmp_path / "x").exists()
