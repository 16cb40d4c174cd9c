"""Reward-learning losses as pure functions of predicted segment returns and labels.

Every loss takes predicted returns with any number of leading dimensions (an ensemble gives
``[E, B]``, one member per row) and labels of the same shape or broadcastable to it, and
returns a scalar: the mean over members. Nothing here holds state; the only learnable loss
parameters (the multi-task log-variances) are passed in as a tensor.

Formulas follow the papers; where a paper is silent, the defaults follow its authors' released
code and the form ratingrl used before 2026-12-03 is an argument away:

- :func:`rbrl_loss` -- RbRL (White et al. 2024): min-max normalise returns in the batch, class
  boundaries at the batch's label-mix quantiles (constants of the batch, as released; or passing
  gradient), logits ``-kappa (x - b_j)(x - b_{j+1})``, cross-entropy.
- :func:`rmse_loss` -- R4 (Kharyal et al. 2026): soft ranks of the returns in groups holding one
  segment per class, squared error to the soft ranks of the ratings (a mean over every entry, as
  released; or summed per group); :func:`weight_norm_penalty` its norm penalty.
- :func:`multitask_loss` -- RbRL classification plus regression to ``log(1 + alpha H c)``,
  weighted by learned homoscedastic uncertainties (Kendall et al. 2018), or the ablations.
- :func:`bt_loss` -- Bradley-Terry on preference pairs (0.5 = equally preferred).
- :func:`regression_loss` -- plain MSE of return to rating, the simplest baseline.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal, get_args

import torch
from torch import Tensor
from torch.nn import functional as F

from ratingrl.rewards.soft_rank import soft_rank

__all__ = [
    "rbrl_boundaries",
    "rbrl_logits",
    "rbrl_loss",
    "rmse_loss",
    "weight_norm_penalty",
    "rating_targets",
    "multitask_loss",
    "bt_loss",
    "regression_loss",
    "MultitaskWeighting",
    "RmseReduction",
]

MultitaskWeighting = Literal["learned", "equal", "classification", "regression"]
RmseReduction = Literal["mean", "sum_per_group"]


def _labels_like(pred: Tensor, labels: Tensor) -> Tensor:
    return labels.to(pred.device).long().expand(pred.shape)


def _minmax(x: Tensor) -> Tensor:
    low = x.min(-1, keepdim=True).values
    high = x.max(-1, keepdim=True).values
    return (x - low) / (high - low).clamp_min(1e-8)


def rbrl_boundaries(normalized: Tensor, labels: Tensor, n_classes: int) -> Tensor:
    """Class boundaries ``b_0..b_n`` from the batch's label mix, shape ``[..., n + 1]``.

    With ``m_j`` labels of class j, ``b_{j+1}`` is the ``(m_0 + ... + m_j)``-th smallest
    normalised return, so a model that orders the batch perfectly puts every segment inside its
    class's interval. An empty class gets a zero-width interval.
    """
    sorted_x = normalized.sort(-1).values
    counts = F.one_hot(labels, n_classes).sum(-2)  # [..., n]
    cumulative = counts.cumsum(-1)  # [..., n]
    inner = sorted_x.gather(-1, (cumulative[..., :-1] - 1).clamp_min(0))
    inner = torch.where(cumulative[..., :-1] > 0, inner, torch.zeros_like(inner))
    zeros = torch.zeros_like(sorted_x[..., :1])
    return torch.cat([zeros, inner, torch.ones_like(zeros)], -1)


def rbrl_logits(
    pred_returns: Tensor,
    labels: Tensor,
    n_classes: int,
    kappa: float = 30.0,
    *,
    boundary_gradient: bool = False,
) -> Tensor:
    """RbRL class logits ``[..., B, n]``: positive inside a class's interval, negative outside.

    The boundaries are constants of the batch unless ``boundary_gradient``: the paper does not
    say, and RbRL's released code turns them into plain numbers before building the logits, so
    only the segments' own returns (and the batch's min and max) receive gradient.
    """
    labels = _labels_like(pred_returns, labels)
    x = _minmax(pred_returns)
    b = rbrl_boundaries(x, labels, n_classes)
    if not boundary_gradient:
        b = b.detach()
    x = x.unsqueeze(-1)
    return -kappa * (x - b[..., :-1].unsqueeze(-2)) * (x - b[..., 1:].unsqueeze(-2))


def rbrl_loss(
    pred_returns: Tensor,
    labels: Tensor,
    n_classes: int,
    kappa: float = 30.0,
    *,
    boundary_gradient: bool = False,
) -> Tensor:
    """Cross-entropy of the RbRL boundary softmax (mean over members and segments).

    ``boundary_gradient=False`` (default) treats the class boundaries as constants, as RbRL's
    released code does; ``True`` also differentiates through them (ratingrl before 2026-12-03).
    The loss value is the same either way; the gradient differs on the segments that set a
    boundary.
    """
    logits = rbrl_logits(
        pred_returns, labels, n_classes, kappa, boundary_gradient=boundary_gradient
    )
    labels = _labels_like(pred_returns, labels)
    return F.cross_entropy(logits.reshape(-1, n_classes), labels.reshape(-1))


def rmse_loss(
    pred_returns: Tensor,
    labels: Tensor,
    regularization_strength: float = 1.0,
    reduction: RmseReduction = "mean",
) -> Tensor:
    """R4's ranking MSE over groups ``[..., G, m]`` (each group: one segment per class).

    A rating maps to its rank position in the group (``0..m-1``, so a group holding classes
    0, 2, 3 is ranked like one holding 0, 1, 2), and the targets are the soft ranks of those
    positions, ``S_eps(0..m-1)``, which equal ``1..m`` when ``eps <= 1``.

    ``reduction="mean"`` (default) averages the squared errors over all ``G * m`` entries, as
    R4's released code does; ``"sum_per_group"`` returns the mean over groups of
    ``||S_eps(G_hat) - targets||^2`` (the paper's per-group norm; ratingrl before 2026-12-03),
    exactly m times larger, which matters only against an added penalty: with it a given
    lambda carries 1/m of the relative weight it has in R4's code.
    """
    if reduction not in get_args(RmseReduction):
        raise ValueError(f"reduction {reduction!r} not in {get_args(RmseReduction)}")
    labels = labels.to(pred_returns).expand(pred_returns.shape)
    m = pred_returns.shape[-1]
    if m < 2:
        raise ValueError(f"an R4 group needs at least 2 classes, got groups of size {m}")
    flat_pred = pred_returns.reshape(-1, m)
    flat_labels = labels.reshape(-1, m)
    if (flat_labels == flat_labels[:, :1]).all(-1).any():
        raise ValueError("an R4 group holds a single rating class: it carries no ranking signal")
    ranks = soft_rank(flat_pred, regularization_strength)
    with torch.no_grad():
        positions = flat_labels.argsort(-1).argsort(-1).to(pred_returns.dtype)
        targets = soft_rank(positions, regularization_strength)
    squared = (ranks - targets) ** 2
    return squared.mean() if reduction == "mean" else squared.sum(-1).mean()


def weight_norm_penalty(weights: Iterable[Tensor]) -> Tensor:
    """``sum_W ||W||_2`` with one (non-squared) Frobenius norm per tensor and member.

    Tensors shaped ``[E, ...]`` (three dimensions: weights ``[E, in, out]``, biases
    ``[E, 1, out]``) contribute one norm per member; the result is the mean over members,
    matching the losses. R4 uses it (lambda 0.01 on walker and cheetah, 0 on quadruped in its
    released configurations) to stop the return scale from growing once the ranking is right;
    R4's released code sums the norms of every parameter, biases included, so pass them all for
    its form, the weight matrices alone for ratingrl's before 2026-12-03.
    """
    total = None
    for w in weights:
        norms = w.flatten(1).norm(dim=-1).mean() if w.dim() == 3 else w.norm()
        total = norms if total is None else total + norms
    if total is None:
        raise ValueError("weight_norm_penalty needs at least one tensor")
    return total


def rating_targets(labels: Tensor, horizon: int, alpha: float) -> Tensor:
    """Rating-induced segment returns ``log(1 + alpha * H * c)`` (multi-task regression)."""
    return torch.log1p(alpha * horizon * labels.float())


def multitask_loss(
    pred_returns: Tensor,
    labels: Tensor,
    n_classes: int,
    log_vars: Tensor,
    *,
    horizon: int,
    alpha: float,
    kappa: float = 30.0,
    weighting: MultitaskWeighting = "learned",
) -> Tensor:
    """Classification (RbRL) plus regression to rating-induced returns.

    ``weighting="learned"``: ``exp(-s_c) L_cls + 0.5 exp(-s_r) L_reg + 0.5 (s_c + s_r)`` with
    ``log_vars = (s_c, s_r)`` learnable. Ablations: ``"equal"`` (0.5 each), ``"classification"``
    and ``"regression"`` (one term only; ``log_vars`` is then ignored).
    """
    # multi-task keeps differentiable boundaries (its form since it was added)
    l_cls = rbrl_loss(pred_returns, labels, n_classes, kappa, boundary_gradient=True)
    target = rating_targets(_labels_like(pred_returns, labels), horizon, alpha)
    l_reg = F.mse_loss(pred_returns, target)
    if weighting == "learned":
        s_c, s_r = log_vars[0], log_vars[1]
        return torch.exp(-s_c) * l_cls + 0.5 * torch.exp(-s_r) * l_reg + 0.5 * (s_c + s_r)
    if weighting == "equal":
        return 0.5 * l_cls + 0.5 * l_reg
    if weighting == "classification":
        return l_cls
    if weighting == "regression":
        return l_reg
    raise ValueError(
        f"weighting {weighting!r} not in ('learned', 'equal', 'classification', 'regression')"
    )


def bt_loss(returns_first: Tensor, returns_second: Tensor, labels: Tensor) -> Tensor:
    """Bradley-Terry: ``P(second > first) = sigmoid(G2 - G1)``, binary cross-entropy.

    ``labels`` hold P(second preferred): 1, 0 or 0.5 for "equally preferable".
    """
    logits = returns_second - returns_first
    return F.binary_cross_entropy_with_logits(logits, labels.to(logits).expand(logits.shape))


def regression_loss(pred_returns: Tensor, labels: Tensor, scale: float = 1.0) -> Tensor:
    """MSE between the predicted return and ``scale * rating`` (the naive baseline)."""
    target = scale * labels.to(pred_returns).expand(pred_returns.shape)
    return F.mse_loss(pred_returns, target)
