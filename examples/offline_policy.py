"""Offline recipe: rate some clips, learn a reward from the ratings, train SAC on it.

Compares the policy's true return with SAC trained on the environment's own reward (the
oracle). Run with ``--quick`` for a smoke test (a minute on two cores); the defaults take longer.

    python examples/offline_policy.py --out /tmp/offline-demo
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from ratingrl.feedback.io import save_rated
from ratingrl.feedback.rollouts import collect_episodes, random_policy, segment_episodes
from ratingrl.feedback.teachers import Bins, RatingTeacher
from ratingrl.rl.train import RunConfig, train


def main(out: Path, quick: bool) -> dict:
    torch.set_num_threads(1)
    env_id, horizon = "Pendulum-v1", 25
    rng = np.random.default_rng(0)

    # 1. Behaviour clips. Random actions are enough here: Pendulum's random episodes span
    #    hanging still to swinging wildly. A real study would use a pool of varied policies.
    episodes = collect_episodes(
        env_id, random_policy(np.array([-2.0]), np.array([2.0]), rng), 8 if quick else 40, 0
    )
    segments = segment_episodes(episodes, horizon, stride=horizon)

    # 2. A simulated teacher rates them on a 4-level scale (quantile bins of the returns).
    teacher = RatingTeacher(Bins.quantile(4, segments.true_returns))
    rated = teacher.rate_dataset(segments, rng)
    rated = replace(rated, source={**rated.source, "env_id": env_id})
    save_rated(rated, out / "rated.parquet")

    # 3. SAC on the learned reward (R4) and on the true reward, same settings.
    base = RunConfig(
        env_id=env_id,
        algo="sac",
        mode="offline",
        total_steps=300 if quick else 20_000,
        net_arch=(64, 64),
        batch_size=64,
        learning_starts=100,
        reward_hidden=(64, 64),
        reward_epochs=5 if quick else 50,
        eval_every=300 if quick else 5_000,
        eval_episodes=2 if quick else 5,
    )
    results = {}
    for method in ("r4", "oracle"):
        config = replace(base, method=method, dataset=str(out / "rated.parquet"))
        if method == "oracle":
            config = replace(config, dataset=None)
        summary = train(config, out / method, overwrite=True, progress=not quick)
        results[method] = summary
        print(
            f"{method:6s}: true return {summary['true_return_final']['mean']:8.1f} "
            f"(best {summary['true_return_best']['mean']:.1f}), "
            f"{summary['env_steps_per_s']:.0f} env steps/s"
        )
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("offline-demo"))
    parser.add_argument("--quick", action="store_true", help="tiny settings for a smoke test")
    args = parser.parse_args()
    main(args.out, args.quick)
