"""How well the learned reward agrees with the true return on the policy's own segments.

A fidelity benchmark scores a reward on a fixed pool of behaviour; an online run's reward meets
other segments -- the ones its own policy produces as it improves. With a simulated teacher the
rated segments carry their true rewards, so each reward update can say, at no cost to the run:

* ``tau_new_before``: Kendall's tau between the *previous* reward's returns and the true returns
  of the segments rated since it was trained -- how well the reward the policy was just
  optimising ranked the behaviour it led to (the number that matters for the policy);
* ``tau_all``: the same for the new reward on every rated segment (how well it fits);
* ``tau_labels``: the ratings themselves against the true returns (the ceiling that coarse
  classes leave);
* ``classes_used`` / ``classes_new``: the rating classes in use overall and in the new batch.

People's ratings carry no true rewards: then nothing is reported.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ratingrl.feedback.segments import RatedSegments
from ratingrl.rewards import metrics
from ratingrl.rewards.nets import RewardEnsemble

__all__ = ["label_fidelity", "kendall_tau"]


def kendall_tau(x: np.ndarray, y: np.ndarray) -> float | None:
    """Kendall's tau-b of two score vectors; None when it is undefined (under two items, or
    one of them constant)."""
    if len(x) < 2:
        return None
    tau = metrics.kendall_tau(x, y)  # NaN when either is constant
    return None if np.isnan(tau) else tau


def label_fidelity(
    before: RewardEnsemble | None,
    after: RewardEnsemble,
    labels: Sequence[object | None],
    seen: Sequence[int],
) -> dict[str, float | int | None]:
    """The figures above for the first rating channel whose segments carry true rewards.

    ``labels`` holds each channel's labels (None while a channel cannot teach yet); ``seen``
    how many of each channel's labels ``before`` was trained on (newer labels are appended).
    Returns ``{}`` when no channel has rated segments with true rewards.
    """
    for data, old in zip(labels, seen, strict=True):
        if not isinstance(data, RatedSegments) or data.segments.true_rewards is None:
            continue
        segments, ratings = data.segments, np.asarray(data.ratings)
        true = segments.true_returns
        new = slice(min(max(old, 0), len(ratings)), None)
        predicted = after.predict_returns(segments.obs, segments.acts).mean(axis=0)
        row: dict[str, float | int | None] = {
            "tau_all": kendall_tau(predicted, true),
            "tau_labels": kendall_tau(ratings.astype(float), true),
            "classes_used": int(np.unique(ratings).size),
            "classes_new": int(np.unique(ratings[new]).size),
            "tau_new_before": None,
        }
        if before is not None and len(ratings[new]) >= 2:
            earlier = before.predict_returns(segments.obs[new], segments.acts[new]).mean(axis=0)
            row["tau_new_before"] = kendall_tau(earlier, true[new])
        return row
    return {}
