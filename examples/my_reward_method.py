"""A reward method of your own, used like the built-in ones (about 20 seconds on a laptop CPU).

This file is both a plugin and a recipe. As a plugin it registers the method ``hinge``: give it
to any command with ``--plugins examples/my_reward_method.py`` and name the method as usual:

    ratingrl reward train --plugins examples/my_reward_method.py --method 'hinge[margin=0.5]' \\
        --data rated.parquet --out hinge.pt
    ratingrl train --plugins examples/my_reward_method.py --method hinge --out runs/hinge

As a recipe (``python examples/my_reward_method.py``) it rates Pendulum segments with a
simulated teacher and compares the new method with R4 on held-out segments.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from ratingrl.rewards.methods import Batch, RewardMethod, make_method, register


@register("hinge")
@dataclass(frozen=True)
class Hinge(RewardMethod):
    """Pairwise hinge on ratings: a segment rated higher must have a return larger by ``margin``.

    Its settings are its fields; the trainer, the validation split, the ensemble and the
    online loop are the library's, so the comparison with the built-in methods is fair.
    """

    margin: float = field(default=1.0, metadata={"help": "return gap between ratings"})

    def loss(self, batch: Batch) -> torch.Tensor:
        returns, ratings = batch.returns, batch.labels.to(batch.returns)  # [members, batch]
        higher = (ratings.unsqueeze(-1) > ratings.unsqueeze(-2)).to(returns)
        gap = returns.unsqueeze(-1) - returns.unsqueeze(-2)
        return (torch.relu(self.margin - gap) * higher).sum() / higher.sum().clamp_min(1)


def main(episodes: int = 12, epochs: int = 30) -> dict[str, float]:
    """Held-out Kendall tau of ``hinge`` and ``r4`` on the same ratings."""
    from ratingrl.feedback.pool import split_by_episode
    from ratingrl.feedback.rollouts import collect_episodes, random_policy, segment_episodes
    from ratingrl.feedback.teachers import Bins, RatingTeacher
    from ratingrl.rewards.metrics import kendall_tau
    from ratingrl.rewards.nets import RewardNetConfig
    from ratingrl.rewards.training import TrainerConfig, train_reward_model

    rng = np.random.default_rng(0)
    policy = random_policy(np.array([-2.0]), np.array([2.0]), rng)
    segments = segment_episodes(collect_episodes("Pendulum-v1", policy, episodes, 0), 50, 25)
    train, test = split_by_episode(segments, 0.3, rng)
    teacher = RatingTeacher(Bins.quantile(4, segments.true_returns[train]))
    rated = teacher.rate_dataset(segments.subset(train), rng)
    held_out = segments.subset(test)
    config = TrainerConfig(epochs=epochs, batch_size=64, net=RewardNetConfig(hidden=(64, 64)))
    taus = {}
    for spec in ("hinge", "r4"):
        model = train_reward_model(rated, make_method(spec), config).model
        predicted = model.predict_returns(held_out.obs, held_out.acts).mean(axis=0)
        taus[spec] = kendall_tau(predicted, held_out.true_returns)
        print(f"{spec}: Kendall tau on {len(held_out)} held-out segments = {taus[spec]:.3f}")
    return taus


if __name__ == "__main__":
    main()
