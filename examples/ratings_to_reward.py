"""Ratings -> reward, top to bottom, on Pendulum (about a minute on a laptop CPU).

1. Collect episodes from a few policies of different quality.
2. Cut them into 50-step segments and have a simulated teacher rate them on a 4-level scale.
3. Save and reload the rated dataset (Parquet).
4. Learn a reward with R4 and with RbRL; check how well each orders held-out segments.

Run: python examples/ratings_to_reward.py
"""

from __future__ import annotations

import numpy as np

from ratingrl.feedback.io import load_rated, save_rated
from ratingrl.feedback.pool import split_by_episode
from ratingrl.feedback.rollouts import collect_episodes, noisy_policy, segment_episodes
from ratingrl.feedback.teachers import Bins, RatingTeacher, UniformRelabel
from ratingrl.rewards.methods import make_method
from ratingrl.rewards.metrics import kendall_tau
from ratingrl.rewards.nets import RewardNetConfig
from ratingrl.rewards.training import TrainerConfig, train_reward_model

ENV = "Pendulum-v1"


def swing_up(obs: np.ndarray) -> np.ndarray:
    """A hand-written energy-pumping controller: decent, not perfect."""
    cos, sin, speed = obs[:, 0], obs[:, 1], obs[:, 2]
    upright = cos > 0.8
    pump = np.sign(speed * cos + 1e-3) * 2.0
    balance = -(8.0 * np.arctan2(sin, cos) + 1.5 * speed)
    return np.clip(np.where(upright, balance, pump), -2, 2)[:, None]


def main(episodes: int = 24, epochs: int = 40, out: str = "rated_pendulum.parquet") -> dict:
    rng = np.random.default_rng(0)
    low, high = np.array([-2.0]), np.array([2.0])
    collected = []
    for i, sigma in enumerate((0.0, 0.5, 2.0)):  # the same controller, more and more noisy
        policy = noisy_policy(swing_up, sigma, low, high, rng)
        collected += collect_episodes(
            ENV, policy, episodes // 3, seed=100 * i, first_episode_id=len(collected)
        )
    segments = segment_episodes(collected, horizon=50, stride=25)

    train, test = split_by_episode(segments, 0.3, rng)
    teacher = RatingTeacher(
        Bins.quantile(4, segments.true_returns[train]),
        noise=(UniformRelabel(0.1),),
        names=("bad", "poor", "good", "excellent"),
    )
    rated = teacher.rate_dataset(segments.subset(train), rng)
    save_rated(rated, out)
    rated = load_rated(out)  # the teacher's configuration travels inside the file
    print(f"{len(rated)} ratings per class: {rated.class_counts().tolist()}")

    config = TrainerConfig(epochs=epochs, batch_size=64, net=RewardNetConfig(hidden=(64, 64)))
    held_out = segments.subset(test)
    taus = {}
    for name in ("r4", "rbrl"):
        overrides = {"groups_per_batch": 16} if name == "r4" else {}
        model = train_reward_model(rated, make_method(name, **overrides), config).model
        predicted = model.predict_returns(held_out.obs, held_out.acts).mean(axis=0)
        taus[name] = kendall_tau(predicted, held_out.true_returns)
        print(f"{name}: Kendall tau on {len(held_out)} held-out segments = {taus[name]:.3f}")
    return taus


if __name__ == "__main__":
    main()
