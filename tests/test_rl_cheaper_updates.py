"""Cheaper online rounds: a fixed budget of gradient steps per reward update
(``reward_update_steps``) takes exactly that many steps whatever the labels, and unset changes
nothing; queries score each step of the overlapping candidate windows once, to the same returns.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch

from ratingrl.feedback.rollouts import Episode, segment_episodes
from ratingrl.rewards.methods import make_method
from ratingrl.rewards.nets import RewardEnsemble, RewardNetConfig
from ratingrl.rewards.training import TrainerConfig, TrainingError, train_reward_model
from ratingrl.rl.builders import make_trainer_config
from ratingrl.rl.config import RunConfig, RunError
from ratingrl.rl.online import window_returns
from ratingrl.rl.train import train

TRAINER = TrainerConfig(
    epochs=3, batch_size=16, val_fraction=0.0, net=RewardNetConfig(hidden=(8,), ensemble_size=2)
)


def _params(result) -> list[torch.Tensor]:
    return [p.detach().clone() for p in result.model.parameters()]


@pytest.mark.parametrize("method", ["rbrl", "r4"])
def test_a_budget_of_whole_epochs_trains_exactly_what_epochs_do(make_rated, method):
    """steps = epochs x batches per epoch draws the same batches and ends on the same weights:
    the budget only decides where training stops."""
    data = make_rated([0, 1, 2] * 30)
    by_epochs = train_reward_model(data, make_method(method), TRAINER)
    per_epoch = by_epochs.steps // TRAINER.epochs
    assert by_epochs.steps == per_epoch * TRAINER.epochs > 0
    by_steps = train_reward_model(
        data, make_method(method), replace(TRAINER, epochs=1, steps=by_epochs.steps)
    )
    assert by_steps.steps == by_epochs.steps and len(by_steps.history) == TRAINER.epochs
    assert [r["loss"] for r in by_steps.history] == [r["loss"] for r in by_epochs.history]
    for a, b in zip(_params(by_steps), _params(by_epochs), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_the_budget_cuts_the_last_epoch_and_ignores_epochs(make_rated):
    data = make_rated([0, 1, 2] * 30)
    per_epoch = train_reward_model(data, make_method("rbrl"), replace(TRAINER, epochs=1)).steps
    budget = 2 * per_epoch + 3
    result = train_reward_model(data, make_method("rbrl"), replace(TRAINER, steps=budget))
    assert result.steps == budget and len(result.history) == 3  # 2 whole epochs + 3 batches
    many = train_reward_model(data, make_method("rbrl"), replace(TRAINER, steps=5 * per_epoch))
    assert len(many.history) == 5 > TRAINER.epochs
    with pytest.raises(TrainingError, match="steps must be >= 1"):
        replace(TRAINER, steps=0)


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
    reward_epochs=12,
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


def test_online_updates_take_the_configured_steps(tmp_path):
    """15 and then 30 labels: without a budget the steps follow the epochs' batches; with one,
    every update takes exactly that many (epochs as many as it needs)."""
    budget = 25
    train(replace(TINY, reward_update_steps=budget), tmp_path / "run", progress=False)
    log = pd.read_csv(tmp_path / "run" / "progress.csv")
    updates = log[log["reward_model/steps"].notna()]
    assert list(updates["feedback/labels"]) == [15, 30]
    assert (updates["reward_model/steps"] == budget).all()
    assert (updates["reward_model/epochs"] < TINY.reward_epochs).all()  # not --reward-epochs


def test_unset_budget_keeps_the_epochs():
    assert RunConfig().reward_update_steps is None  # runs made before the field are unchanged
    assert make_trainer_config(TINY).steps is None
    assert make_trainer_config(TINY).epochs == TINY.reward_epochs
    assert make_trainer_config(replace(TINY, reward_update_steps=40)).steps == 40


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"reward_update_steps": 0}, "reward_update_steps must be >= 1"),
        (
            {"reward_update_steps": 10, "mode": "offline", "dataset": "x.parquet"},
            "reward_update_steps=10 \\(--reward-update-steps\\) sets the online",
        ),
    ],
)
def test_bad_budget_is_named(changes, message):
    with pytest.raises(RunError, match=message):
        replace(TINY, **changes).validate()


def test_budget_steps_per_epoch_is_the_ceiling(make_rated):
    """The number of epochs a budget runs is ceil(budget / batches per epoch)."""
    data = make_rated([0, 1, 2] * 20)
    per_epoch = train_reward_model(data, make_method("rbrl"), replace(TRAINER, epochs=1)).steps
    for budget in (1, per_epoch, per_epoch + 1, 3 * per_epoch - 1):
        result = train_reward_model(data, make_method("rbrl"), replace(TRAINER, steps=budget))
        assert len(result.history) == math.ceil(budget / per_epoch)


def test_overlapping_windows_are_scored_step_by_step_to_the_same_returns():
    rng = np.random.default_rng(0)
    episodes = [
        Episode(
            rng.normal(size=(n, 4)).astype(np.float32),
            rng.uniform(-1, 1, size=(n, 2)).astype(np.float32),
            np.zeros(n, np.float32),
            episode_id,
        )
        for episode_id, n in ((7, 120), (8, 95), (30, 60))
    ]
    windows = segment_episodes(episodes, horizon=20, stride=5)
    model = RewardEnsemble(4, 2, RewardNetConfig(hidden=(16, 16), ensemble_size=3), seed=1)
    expected = model.predict_returns(windows.obs, windows.acts)
    np.testing.assert_allclose(window_returns(model, windows), expected, rtol=1e-6, atol=1e-6)
    some = windows.subset(np.array([0, 3, 4, 40, 41]))  # a subset, as non-episode selectors see
    np.testing.assert_allclose(
        window_returns(model, some, rows=7), expected[:, [0, 3, 4, 40, 41]], rtol=1e-6, atol=1e-6
    )
