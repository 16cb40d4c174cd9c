"""A reward method from the user's own module, outside the package, trained through the CLI:
``ratingrl train --plugins examples/my_reward_method.py --method hinge`` and ``reward train``."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from ratingrl.cli import app
from ratingrl.feedback.io import save_rated
from ratingrl.feedback.rollouts import collect_episodes, random_policy, segment_episodes
from ratingrl.feedback.teachers import Bins, RatingTeacher

runner = CliRunner()

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "my_reward_method.py"


@pytest.fixture
def plugin(isolated_registry):
    """The recipe in examples/: a module outside the package that registers ``hinge``."""
    return EXAMPLE


@pytest.fixture
def rated(tmp_path):
    rng = np.random.default_rng(0)
    policy = random_policy(np.array([-2.0]), np.array([2.0]), rng)
    segments = segment_episodes(collect_episodes("Pendulum-v1", policy, 8, 0, max_steps=60), 20, 5)
    data = RatingTeacher(Bins.quantile(4, segments.true_returns)).rate_dataset(segments, rng)
    path = tmp_path / "rated.parquet"
    save_rated(replace(data, source={**data.source, "env_id": "Pendulum-v1"}), path)
    return path


def test_unknown_method_names_the_registered_ones_and_the_plugin_option(isolated_registry):
    result = runner.invoke(app, ["train", "--method", "hinge", "--check"])
    assert result.exit_code == 2
    assert "unknown method 'hinge'" in result.output and "--plugins" in result.output
    assert "r4" in result.output and "Traceback" not in result.output


def test_a_plugin_method_trains_a_policy_and_a_reward_through_the_cli(tmp_path, plugin, rated):
    run = tmp_path / "run"
    args = [
        "train", "--plugins", str(plugin), "--method", "hinge[margin=0.5]",
        "--mode", "offline", "--dataset", str(rated), "--env", "Pendulum-v1", "--algo", "ppo",
        "--steps", "128", "--n-steps", "64", "--net-arch", "16", "--reward-hidden", "16",
        "--reward-epochs", "20", "--eval-every", "128", "--eval-episodes", "1",
        "--max-episode-steps", "60", "--no-progress", "--out", str(run),
    ]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    summary = json.loads((run / "summary.json").read_text())
    assert summary["config"]["method"] == "hinge"
    assert summary["config"]["method_settings"] == {"margin": 0.5}
    assert summary["config"]["plugins"] == [str(plugin)]
    assert summary["reward_model"]["val_score"] > 0.5  # held-out Kendall tau: it learned
    assert summary["env_steps"] == 128

    out = tmp_path / "reward.pt"
    reward = ["reward", "train", "--plugins", str(plugin), "--method", "hinge"]
    reward += ["--epochs", "30"]
    result = runner.invoke(app, [*reward, "--data", str(rated), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert out.exists() and "hinge: best epoch" in result.output
    tau = float(result.output.split("validation Kendall tau")[1].split(";")[0])
    assert tau > 0.5


def test_a_plugin_that_cannot_be_imported_is_a_one_line_error(tmp_path, isolated_registry):
    broken = tmp_path / "broken.py"
    broken.write_text("raise RuntimeError('boom')\n")
    for args in (["train", "--check"], ["reward", "train", "--data", "x", "--out", "y"]):
        result = runner.invoke(app, [*args, "--plugins", str(broken)])
        assert result.exit_code == 2, result.output
        assert "boom" in result.output and "Traceback" not in result.output
