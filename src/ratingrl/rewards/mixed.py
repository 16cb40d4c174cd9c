"""Learn one reward from ratings and preferences at once: the sum of the two losses.

Each step draws a batch of ratings (the rating method's own sampler, e.g. R4's stratified
groups) and a batch of pairs, and minimises ``rating_loss + preference_weight * bt_loss``.
Model selection uses the mean of the two validation scores (Kendall tau on held-out ratings,
agreement on held-out pairs). The samplers, losses and epoch loop are the single trainer's
(``rewards.training``), so mixed training cannot drift from the single-source methods.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

import numpy as np
import torch

from ratingrl.feedback.segments import PreferencePairs, RatedSegments
from ratingrl.rewards.nets import RewardEnsemble
from ratingrl.rewards.training import (
    BTConfig,
    MethodConfig,
    TrainerConfig,
    TrainingError,
    TrainResult,
    _PairTrainer,
    _RatingTrainer,
    _Trainer,
)

__all__ = ["train_mixed"]


class _MixedTrainer(_Trainer):
    def __init__(self, ratings: _RatingTrainer, pairs: _PairTrainer, weight: float) -> None:
        super().__init__(ratings.method, ratings.config, ratings.rng)
        self.ratings, self.pairs, self.weight = ratings, pairs, weight
        self.extra_params = ratings.extra_params
        self.has_validation = ratings.has_validation or pairs.has_validation

    def batches(self):
        rating_batches = list(self.ratings.batches())
        pair_batches = list(self.pairs.batches())
        n = max(len(rating_batches), len(pair_batches))
        cycle = itertools.cycle
        return itertools.islice(zip(cycle(rating_batches), cycle(pair_batches), strict=False), n)

    def loss(self, model: RewardEnsemble, batch) -> torch.Tensor:
        rating_batch, pair_batch = batch
        return self.ratings.loss(model, rating_batch) + self.weight * self.pairs.loss(
            model, pair_batch
        )

    def validate(self, model: RewardEnsemble) -> dict:
        r, p = self.ratings.validate(model), self.pairs.validate(model)
        scores = [s for s in (r["val_score"], p["val_score"]) if np.isfinite(s)]
        return {
            "val_score": float(np.mean(scores)) if scores else float("nan"),
            "val_accuracy": r["val_accuracy"],
            "val_rating_tau": r["val_score"],
            "val_pair_accuracy": p["val_score"],
        }

    def extra(self) -> dict:
        return {**self.ratings.extra(), "preference_weight": self.weight}


def train_mixed(
    ratings: RatedSegments,
    preferences: PreferencePairs,
    method: MethodConfig,
    config: TrainerConfig | None = None,
    *,
    preference_weight: float = 1.0,
    model: RewardEnsemble | None = None,
    on_epoch: Callable[[dict], None] | None = None,
) -> TrainResult:
    """Train (or continue training) a reward ensemble on ratings and preference pairs together.

    ``method`` is the rating method (r4, rbrl, multitask, regression); pairs always use
    Bradley-Terry.
    """
    config = config or TrainerConfig()
    if isinstance(method, BTConfig):
        raise TrainingError("mixed training needs a rating method for the ratings, not 'bt'")
    seg, first = ratings.segments, preferences.first
    if (seg.obs_dim, seg.act_dim) != (first.obs_dim, first.act_dim):
        raise TrainingError(
            f"ratings have obs/act dims {(seg.obs_dim, seg.act_dim)} but preferences have "
            f"{(first.obs_dim, first.act_dim)}"
        )
    rng = np.random.default_rng(config.seed)
    torch.manual_seed(config.seed)
    if model is None:
        model = RewardEnsemble(seg.obs_dim, seg.act_dim, config.net, config.seed)
        obs = np.concatenate([seg.obs.reshape(-1, seg.obs_dim), first.obs.reshape(-1, seg.obs_dim)])
        acts = np.concatenate(
            [seg.acts.reshape(-1, seg.act_dim), first.acts.reshape(-1, seg.act_dim)]
        )
        model.fit_normalizer(obs, acts)
    trainer = _MixedTrainer(
        _RatingTrainer(ratings, method, config, rng),
        _PairTrainer(preferences, BTConfig(), config, rng),
        preference_weight,
    )
    return trainer.fit(model, on_epoch)
