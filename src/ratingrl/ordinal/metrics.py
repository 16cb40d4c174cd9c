"""Held-out metrics for ordinal predictions: MAE, exact accuracy, Kendall tau and Spearman.

Correlations are computed per task over all held-out images (then averaged over tasks, since
the tasks' values are not comparable with each other). ``query_tau`` is the mean Kendall tau-b
inside held-out multi-image queries, the quantity the ranking reward targets; an undefined tau
(tied labels in a query, or a constant prediction) counts as 0 there, as in the reward.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from scipy.stats import kendalltau, spearmanr

from ratingrl.ordinal.rewards import kendall_tau

__all__ = ["ordinal_metrics"]


def _correlation(kind: str, pred: np.ndarray, labels: np.ndarray) -> float:
    """A correlation that is 0 (not NaN) when a constant prediction leaves it undefined."""
    if np.ptp(pred) == 0 or np.ptp(labels) == 0:
        return 0.0
    fn = kendalltau if kind == "kendall" else spearmanr
    return float(fn(pred, labels).statistic)


def ordinal_metrics(
    pred: np.ndarray,
    labels: np.ndarray,
    tasks: np.ndarray,
    queries: Mapping[int, np.ndarray] | None = None,
) -> dict[str, float]:
    """Metrics of predictions ``pred`` against ``labels`` (both ``(n,)``) for tasks ``tasks``.

    ``queries`` maps a query size to ``(Q, size)`` index arrays for ``query_tau``.

    >>> m = ordinal_metrics(np.array([0, 1, 3, 3]), np.array([0, 1, 2, 3]), np.array([0, 0, 0, 0]))
    >>> m["mae"], m["accuracy"], round(m["kendall_tau"], 4), round(m["spearman"], 4)
    (0.25, 0.75, 0.9129, 0.9487)
    """
    pred, labels = np.asarray(pred, dtype=float), np.asarray(labels, dtype=float)
    out = {
        "mae": float(np.abs(pred - labels).mean()),
        "accuracy": float((pred == labels).mean()),
    }
    task_ids = np.unique(tasks)
    for kind, name in (("kendall", "kendall_tau"), ("spearman", "spearman")):
        out[name] = float(
            np.mean([_correlation(kind, pred[tasks == t], labels[tasks == t]) for t in task_ids])
        )
    for t in task_ids:
        sel = tasks == t
        out[f"mae_task{int(t)}"] = float(np.abs(pred[sel] - labels[sel]).mean())
        out[f"kendall_tau_task{int(t)}"] = _correlation("kendall", pred[sel], labels[sel])
    if queries:
        per_size = []
        for size, idx in sorted(queries.items()):
            tau = np.nan_to_num(kendall_tau(pred[idx], labels[idx]), nan=0.0).mean()
            out[f"query_tau_n{size}"] = float(tau)
            per_size.append(tau)
        out["query_tau"] = float(np.mean(per_size))
    return out
