"""A model of each rater: ratings on different scales pooled into one reward.

People do not share a scale: they choose their own number of classes, put the boundaries in
their own places and are not equally careful (R4's human study; :mod:`ratingrl.feedback.crowd`
simulates such a crowd). Pooling their ratings as if one teacher gave them all mixes a strict
rater's "good" with a lenient one's. The ``raters`` method instead fits one reward network and,
for each rater ``r`` with ``K_r`` classes, an ordered logit (a cumulative-link model,
McCullagh 1980) on the network's predicted segment return::

    P(y <= k | segment, r) = sigmoid(s_r * (t_{r,k} - x)),   k = 0 .. K_r - 2

where ``x`` is the predicted return standardised over the batch (which fixes the shared scale's
origin and unit, as RbRL's min-max normalisation does), ``t_{r,0} < ... < t_{r,K_r-2}`` are the
rater's own thresholds and ``s_r`` their sharpness (an inconsistent rater's is learned low, so
their labels move the reward less). Each label's negative log-likelihood is weighted by its
rater's consistency on hidden repeats (:func:`repeat_consistency`), so a rater who contradicts
themselves counts for less even before the fit finds out.

A rater's number of classes comes from :func:`ratingrl.feedback.crowd.rater_classes`: the
crowd's record, or the data's scale when everyone rated on one (the app's projects). With one
rater (or none named) the method is a plain ordered-logit reward model.

The losses are pure functions of tensors; the method class only gathers each label's rater.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
import torch
from scipy.stats import norm
from torch import Tensor
from torch.nn import functional as F

from ratingrl.feedback.crowd import own_class, rater_classes
from ratingrl.feedback.segments import RatedSegments
from ratingrl.rewards import robust
from ratingrl.rewards.registry import Batch, DataInfo, RewardMethod, TrainingError, register

__all__ = [
    "ordered_thresholds",
    "ordered_logit_log_prob",
    "rater_ordinal_loss",
    "repeat_consistency",
    "consistency_weights",
    "RaterModel",
]


# -- losses: pure functions of tensors ---------------------------------------------------------
def ordered_thresholds(first: Tensor, raw_gaps: Tensor) -> Tensor:
    """Increasing thresholds ``[R, M]`` from the first ``[R]`` and raw gaps ``[R, M - 1]``:
    ``t_0 = first``, ``t_k = t_{k-1} + softplus(raw_gap_k)``; any values give a valid order."""
    return robust.ordered_thresholds(torch.cat([first.unsqueeze(-1), raw_gaps], -1))


def ordered_logit_log_prob(
    x: Tensor, own: Tensor, n_classes: Tensor, thresholds: Tensor, sharpness: Tensor
) -> Tensor:
    """``log P(y = own)`` under an ordered logit, shape of ``x`` (``[..., B]``).

    ``own``, ``n_classes`` and ``sharpness`` are ``[B]``; ``thresholds`` ``[B, M]`` holds each
    label's rater's thresholds (only the first ``n_classes - 1`` are used). With ``a = s (t_c -
    x)`` and ``b = s (t_{c-1} - x)``, ``P = sigmoid(a) - sigmoid(b)`` is computed as
    ``log sigmoid(a) + log sigmoid(-b) + log(1 - exp(b - a))``, which stays finite for extreme
    returns; the outer classes drop the missing term.
    """
    own = own.long()
    has_lower, has_upper = own > 0, own < n_classes - 1
    upper_t = thresholds.gather(-1, own.clamp(max=thresholds.shape[-1] - 1).unsqueeze(-1))
    lower_t = thresholds.gather(-1, (own - 1).clamp(min=0).unsqueeze(-1))
    a = sharpness * (upper_t.squeeze(-1) - x)
    b = sharpness * (lower_t.squeeze(-1) - x)
    both = has_lower & has_upper
    gap = torch.where(both, b - a, torch.full_like(a, -1.0))  # < 0 where used
    inner = torch.log(-torch.expm1(gap).clamp(max=-1e-12))
    zero = torch.zeros_like(a)
    return (
        torch.where(has_upper, F.logsigmoid(a), zero)
        + torch.where(has_lower, F.logsigmoid(-b), zero)
        + torch.where(both, inner, zero)
    )


def rater_ordinal_loss(
    pred_returns: Tensor,
    own: Tensor,
    n_classes: Tensor,
    thresholds: Tensor,
    sharpness: Tensor,
    weights: Tensor,
) -> Tensor:
    """Weighted mean negative log-likelihood of the labels (mean over members).

    ``pred_returns`` is ``[..., B]`` (an ensemble's ``[E, B]``) and is standardised over the
    batch, per member; the other arguments are per label, ``[B]`` (``thresholds`` ``[B, M]``):
    own class, the rater's class count, thresholds, sharpness and weight. The result is
    ``sum_b w_b nll_b / sum_b w_b``, so weights say how much each label counts relative to the
    others, not how large the loss is.
    """
    mean = pred_returns.mean(-1, keepdim=True)
    std = pred_returns.std(-1, correction=0, keepdim=True).clamp_min(1e-6)
    x = (pred_returns - mean) / std
    nll = -ordered_logit_log_prob(x, own, n_classes, thresholds, sharpness)
    nll = nll.reshape(-1, nll.shape[-1]).mean(0)
    return (weights * nll).sum() / weights.sum().clamp_min(1e-12)


# -- consistency from hidden repeats -----------------------------------------------------------
def repeat_consistency(own: np.ndarray, codes: np.ndarray, keys: np.ndarray, n_raters: int):
    """Each rater's consistency on repeats and the number of repeat pairs it rests on.

    A pair is a later rating of a segment the same rater rated before (``keys`` names the
    segment). Consistency is ``1 - mean|y1 - y2| / E|y - y'|``, the expected difference taken
    between independent draws from the rater's own ratings: 1 for a rater who always repeats
    themselves, about 0 for one who answers at random, and free of their number of classes.
    NaN where a rater has no pairs or used a single class. Returns ``(consistency, pairs)``.
    """
    consistency = np.full(n_raters, np.nan)
    pairs = np.zeros(n_raters, dtype=np.int64)
    for r in range(n_raters):
        mine = np.flatnonzero(codes == r)
        first: dict[object, int] = {}
        diffs = []
        for i in mine:
            key = keys[i]
            if key in first:
                diffs.append(abs(int(own[i]) - int(own[first[key]])))
            else:
                first[key] = i
        pairs[r] = len(diffs)
        ratings = own[mine].astype(np.float64)
        spread = np.abs(ratings[:, None] - ratings[None, :]).mean() if len(mine) else 0.0
        if diffs and spread > 0:
            consistency[r] = 1.0 - np.mean(diffs) / spread
    return consistency, pairs


def consistency_weights(
    consistency: np.ndarray, pairs: np.ndarray, prior_pairs: float, min_weight: float
) -> np.ndarray:
    """Per-rater weights: consistency shrunk towards the crowd's, clipped to ``[min_weight, 1]``.

    ``w_r = (n_r c_r + n0 c) / (n_r + n0)`` with ``n_r`` pairs, ``n0 = prior_pairs`` and ``c``
    the pair-weighted mean consistency of all raters (1 when nobody was shown a repeat, so data
    without repeats weighs every rater alike). A handful of repeats is a noisy estimate; the
    prior keeps one unlucky pair from silencing a rater.
    """
    known = np.isfinite(consistency) & (pairs > 0)
    crowd = float(np.average(consistency[known], weights=pairs[known])) if known.any() else 1.0
    n = np.where(known, pairs, 0).astype(np.float64)
    c = np.where(known, consistency, 0.0)
    shrunk = (n * c + prior_pairs * crowd) / np.maximum(n + prior_pairs, 1e-12)
    return np.clip(shrunk, min_weight, 1.0)


# -- the method --------------------------------------------------------------------------------
def _rater_codes(data: RatedSegments) -> tuple[list[object], np.ndarray]:
    """Rater names in first-seen order and each label's index into them."""
    names = [None] if data.rater is None else list(dict.fromkeys(data.rater))
    if data.rater is None:
        return names, np.zeros(len(data), dtype=np.int64)
    index = {name: i for i, name in enumerate(names)}
    return names, np.array([index[name] for name in data.rater], dtype=np.int64)


def _segment_keys(data: RatedSegments, rows: np.ndarray) -> np.ndarray:
    """One key per row, equal for rows that show the same segment (observations and actions)."""
    seg = data.segments
    n = len(rows)
    flat = np.concatenate([seg.obs[rows].reshape(n, -1), seg.acts[rows].reshape(n, -1)], 1)
    return np.unique(flat, axis=0, return_inverse=True)[1].reshape(-1)


def _initial_thresholds(own: np.ndarray, k: int, m: int) -> np.ndarray:
    """Thresholds at the normal quantiles of the rater's cumulative class shares (so a reward
    whose standardised returns are normal starts out reproducing the rater's label mix)."""
    shares = np.array([(own < c).mean() if len(own) else c / k for c in range(1, k)])
    t = norm.ppf(np.clip(shares, 0.02, 0.98))
    t = np.concatenate([t, t[-1] + 0.5 * np.arange(1, m - len(t) + 1)])  # unused, padded
    for i in range(1, m):  # strictly increasing: empty classes get a narrow interval
        t[i] = max(t[i], t[i - 1] + 0.05)
    return t


@register("raters")
@dataclass(frozen=True)
class RaterModel(RewardMethod):
    """One reward, an ordered logit per rater (own classes, thresholds, sharpness), labels
    weighted by each rater's consistency on hidden repeats."""

    learns_from_repeats: ClassVar[bool] = True

    sharpness: float = field(
        default=10.0, metadata={"help": "initial sharpness s of every rater's ordered logit"}
    )
    learn_sharpness: bool = field(
        default=True, metadata={"help": "learn s per rater (false: fixed at its initial value)"}
    )
    repeat_weights: bool = field(
        default=True, metadata={"help": "weight each rater by their consistency on repeats"}
    )
    prior_pairs: float = field(
        default=3.0,
        metadata={"help": "pseudo-pairs shrinking a rater's consistency to the crowd's"},
    )
    min_weight: float = field(default=0.05, metadata={"help": "least weight a rater keeps"})
    speed: float = field(
        default=10.0,
        metadata={
            "help": "the per-rater parameters are stored divided by this, so the shared optimiser "
            "moves them this many times faster than the network's weights"
        },
    )

    def __post_init__(self) -> None:
        if not self.sharpness > 0 or not self.speed > 0:
            raise TrainingError(
                f"raters sharpness and speed must be > 0, got {self.sharpness!r}, {self.speed!r}"
            )
        if not self.prior_pairs >= 0 or not 0 < self.min_weight <= 1:
            raise TrainingError(
                f"raters needs prior_pairs >= 0 and 0 < min_weight <= 1, got "
                f"{self.prior_pairs!r} and {self.min_weight!r}"
            )

    def check_data(self, data: DataInfo) -> None:
        if not isinstance(data.dataset, RatedSegments):
            raise TrainingError("the raters method needs the rated segments in DataInfo.dataset")
        if len(data.train_classes) < 2:
            raise TrainingError("the raters training split holds a single rating class")

    def extra_parameters(self, data: DataInfo) -> dict[str, Tensor]:
        """Per rater, in first-seen order: thresholds and log-sharpness (learned, stored
        divided by ``speed``: multiply the run's reported values by it); the class counts and
        consistency weights are constants, kept here so the run reports them."""
        self.check_data(data)
        dataset = data.dataset
        names, codes = _rater_codes(dataset)
        counts = rater_classes(dataset)
        k = np.array([counts[name] for name in names], dtype=np.int64)
        m = max(int(k.max()) - 1, 1)
        own = own_class(data.labels, k[codes], data.n_classes)
        train = data.train_idx
        init = np.stack(
            [_initial_thresholds(own[train][codes[train] == r], k[r], m) for r in range(len(k))]
        )
        gaps = np.log(np.expm1(np.maximum(np.diff(init, axis=1), 1e-3)))
        weights = np.ones(len(k))
        if self.repeat_weights:
            keys = _segment_keys(dataset, train)
            consistency, pairs = repeat_consistency(own[train], codes[train], keys, len(k))
            weights = consistency_weights(consistency, pairs, self.prior_pairs, self.min_weight)
        log_s = torch.full((len(k),), float(np.log(self.sharpness)) / self.speed)
        learned = {"threshold_first": init[:, 0], "threshold_gaps": gaps}
        return {
            **{
                name: torch.tensor(value / self.speed, dtype=torch.float32, requires_grad=True)
                for name, value in learned.items()
            },
            "log_sharpness": log_s.requires_grad_(self.learn_sharpness),
            "rater_classes": torch.tensor(k, dtype=torch.float32),
            "rater_weights": torch.tensor(weights, dtype=torch.float32),
        }

    def loss(self, batch: Batch) -> Tensor:
        if batch.index is None:
            raise TrainingError("the raters method needs Batch.index (each label's row)")
        rows = batch.index.numpy()
        _, codes = _rater_codes(batch.data.dataset)
        c = torch.as_tensor(codes[rows])
        p = batch.params
        k = p["rater_classes"].long()[c]
        own = torch.as_tensor(own_class(batch.labels.numpy(), k.numpy(), batch.data.n_classes))
        v = self.speed
        thresholds = ordered_thresholds(v * p["threshold_first"], v * p["threshold_gaps"])[c]
        sharpness = (v * p["log_sharpness"]).exp()[c]
        return rater_ordinal_loss(
            batch.returns, own, k, thresholds, sharpness, p["rater_weights"][c]
        )
