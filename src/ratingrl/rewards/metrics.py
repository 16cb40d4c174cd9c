"""How faithful is a learned reward? Rank agreement with the truth, and label agreement.

Kendall's tau (tau-b, which handles ties such as many segments sharing a rating) and Spearman's
rho compare the *order* of predicted and true segment returns: a reward that orders behaviour
right trains the same policy whatever its scale, so order is what fidelity means here.
"""

from __future__ import annotations

import numpy as np
from scipy import stats

__all__ = ["kendall_tau", "spearman", "quantile_label_accuracy", "pair_accuracy"]


def _finite_or_nan(value: float) -> float:
    return float(value) if np.isfinite(value) else float("nan")


def kendall_tau(predicted: np.ndarray, truth: np.ndarray) -> float:
    """Kendall's tau-b between two score vectors (NaN when either is constant).

    >>> kendall_tau(np.array([1.0, 2.0, 3.0]), np.array([10.0, 20.0, 30.0]))
    1.0
    """
    return _finite_or_nan(stats.kendalltau(predicted, truth).statistic)


def spearman(predicted: np.ndarray, truth: np.ndarray) -> float:
    """Spearman's rank correlation (NaN when either vector is constant).

    >>> spearman(np.array([1.0, 2.0, 3.0]), np.array([3.0, 2.0, 1.0]))
    -1.0
    """
    return _finite_or_nan(stats.spearmanr(predicted, truth).statistic)


def quantile_label_accuracy(predicted: np.ndarray, labels: np.ndarray, n_classes: int) -> float:
    """Share of segments whose rating is recovered by cutting the predicted order by the label mix.

    The lowest ``m_0`` predicted returns are called class 0, the next ``m_1`` class 1, and so on
    (``m_j`` = how many labels of class j there are): RbRL's own boundary rule, applied to any
    reward, so the number is comparable across methods whatever their return scale.

    >>> quantile_label_accuracy(np.array([0.1, 0.9, 0.5, 0.2]), np.array([0, 1, 1, 0]), 2)
    1.0
    """
    labels = np.asarray(labels, dtype=np.int64)
    order = np.argsort(predicted, kind="stable")
    assigned = np.empty_like(labels)
    assigned[order] = np.repeat(np.arange(n_classes), np.bincount(labels, minlength=n_classes))
    return float((assigned == labels).mean())


def pair_accuracy(first: np.ndarray, second: np.ndarray, labels: np.ndarray) -> float:
    """Share of decided pairs (label 0 or 1) on which the predicted returns agree.

    >>> pair_accuracy(np.array([0.0, 1.0]), np.array([1.0, 0.0]), np.array([1.0, 1.0]))
    0.5
    """
    decided = labels != 0.5
    if not decided.any():
        return float("nan")
    agree = (second > first) == (labels > 0.5)
    return float(agree[decided].mean())
