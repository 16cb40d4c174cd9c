"""A reward method from the user's own module, outside the package, trained through the CLI:
``ratingrl train --plugins my_methods.py --method my_method`` and ``ratingrl reward train``."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
from typer.testing import CliRunner

from ratingrl.cli import app
from ratingrl.feedback.io import save_rated
from ratingrl.feedback.rollouts import collect_episodes, random_policy, segment_episodes
from ratingrl.feedback.teachers import Bins, RatingTeacher
from ratingrl.rewards.methods import registered_methods, unregister

runner = CliRunner()

PLUGIN = '''
"""My own reward method: a pairwise hinge on ratings."""
from dataclasses import dataclass, field

import torch

from ratingrl.rewards.methods import Batch, RewardMethod, register


@register("cli_hinge")
@dataclass(frozen=True)
class CliHinge(RewardMethod):
    margin: float = field(default=1.0, metadata={"help": "return gap between ratings"})

    def loss(self, batch: Batch) -> torch.Tensor:
        r, y = batch.returns, batch.labels.to(batch.returns)
        above = (y.unsqueeze(-1) > y.unsqueeze(-2)).to(r)
        gap = r.unsqueeze(-1) - r.unsqueeze(-2)
        return (torch.relu(self.margin - gap) * above).sum() / above.sum().clamp_min(1)
'''


@pytest.fixture
def plugin(tmp_path):
    path = tmp_path / "my_methods.py"
    path.write_text(PLUGIN)
    yield path
    if "cli_hinge" in registered_methods():
        unregister("cli_hinge")


@pytest.fixture
def rated(tmp_path):
    rng = np.random.default_rng(0)
    policy = random_policy(np.array([-2.0]), np.array([2.0]), rng)
    segments = segment_episodes(collect_episodes("Pendulum-v1", policy, 8, 0, max_steps=60), 20, 5)
    data = RatingTeacher(Bins.quantile(4, segments.true_returns)).rate_dataset(segments, rng)
    path = tmp_path / "rated.parquet"
    save_rated(replace(data, source={**data.source, "env_id": "Pendulum-v1"}), path)
    return path


def test_unknown_method_names_the_registered_ones_and_the_plugin_option(tmp_path):
    result = runner.invoke(app, ["train", "--method", "cli_hinge", "--check"])
    assert result.exit_code == 2
    assert "unknown method 'cli_hinge'" in result.output and "--plugins" in result.output
    assert "r4" in result.output and "Traceback" not in result.output


def test_a_plugin_method_trains_a_policy_and_a_reward_through_the_cli(tmp_path, plugin, rated):
    run = tmp_path / "run"
    args = [
        "train", "--plugins", str(plugin), "--method", "cli_hinge[margin=0.5]",
        "--mode", "offline", "--dataset", str(rated), "--env", "Pendulum-v1", "--algo", "ppo",
        "--steps", "128", "--n-steps", "64", "--net-arch", "16", "--reward-hidden", "16",
        "--reward-epochs", "20", "--eval-every", "128", "--eval-episodes", "1",
        "--max-episode-steps", "60", "--no-progress", "--out", str(run),
    ]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    summary = json.loads((run / "summary.json").read_text())
    assert summary["config"]["method"] == "cli_hinge"
    assert summary["config"]["method_settings"] == {"margin": 0.5}
    assert summary["config"]["plugins"] == [str(plugin)]
    assert summary["reward_model"]["val_score"] > 0.5  # held-out Kendall tau: it learned
    assert summary["env_steps"] == 128

    out = tmp_path / "reward.pt"
    reward = ["reward", "train", "--plugins", str(plugin), "--method", "cli_hinge"]
    reward += ["--epochs", "30"]
    result = runner.invoke(app, [*reward, "--data", str(rated), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert out.exists() and "cli_hinge: best epoch" in result.output
    tau = float(result.output.split("validation Kendall tau")[1].split(";")[0])
    assert tau > 0.5


def test_a_plugin_that_cannot_be_imported_is_a_one_line_error(tmp_path):
    broken = tmp_path / "broken.py"
    broken.write_text("raise RuntimeError('boom')\n")
    for args in (["train", "--check"], ["reward", "train", "--data", "x", "--out", "y"]):
        result = runner.invoke(app, [*args, "--plugins", str(broken)])
        assert result.exit_code == 2, result.output
        assert "boom" in result.output and "Traceback" not in result.output
