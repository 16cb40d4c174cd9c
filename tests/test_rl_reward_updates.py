"""Online reward updates train on every label for the configured epochs (no tiny held-out split)."""

from __future__ import annotations

from dataclasses import replace

import pandas as pd
import pytest

from ratingrl.rl.builders import make_online_method, make_trainer_config
from ratingrl.rl.config import RunConfig, RunError
from ratingrl.rl.train import train

TINY = RunConfig(
    env_id="Pendulum-v1",
    algo="ppo",
    method="r4",
    mode="online",
    total_steps=768,
    max_episode_steps=100,
    net_arch=(16, 16),
    n_steps=128,
    reward_hidden=(16, 16),
    reward_epochs=12,  # > patience + 1: early stopping would show
    budget=30,
    per_round=15,
    schedule="interval",
    schedule_unit=300,
    horizon=20,
    candidate_episodes=5,
    rating_range=(-320.0, 0.0),
    eval_every=10_000,
    eval_episodes=1,
    checkpoint_every=10_000,
)


def test_default_split_is_online_none_offline_ten_percent():
    assert make_trainer_config(TINY).val_fraction == 0.0
    offline = replace(TINY, mode="offline", dataset="x.parquet")
    assert make_trainer_config(offline).val_fraction == 0.1
    assert make_trainer_config(replace(TINY, reward_val_fraction=0.2)).val_fraction == 0.2


def test_every_online_update_runs_all_epochs_on_all_labels(tmp_path):
    """With a held-out split, warm-started updates kept epoch 1 and threw the rest away."""
    train(TINY, tmp_path / "run", progress=False)
    log = pd.read_csv(tmp_path / "run" / "progress.csv")
    updates = log[log["reward_model/epochs"].notna()]
    assert list(updates["feedback/labels"]) == [15, 30]
    assert (updates["reward_model/epochs"] == TINY.reward_epochs).all()
    assert (updates["reward_model/best_epoch"] == TINY.reward_epochs).all()
    assert "reward_model/val_score" not in log


@pytest.mark.parametrize("fraction", [-0.1, 1.0])
def test_bad_val_fraction_is_named(tmp_path, fraction):
    with pytest.raises(RunError, match="reward_val_fraction"):
        train(replace(TINY, reward_val_fraction=fraction), tmp_path / "run", progress=False)


def test_online_r4_uses_its_online_batch_of_ten_groups():
    from ratingrl.rewards.methods import R4

    method = make_online_method(replace(TINY, method="r4"))
    assert isinstance(method, R4) and method.groups_per_batch == 10
    assert make_online_method(replace(TINY, method="rbrl")).name == "rbrl"
