"""How much raters agree: Krippendorff's alpha (ordinal) and each rater's self-consistency.

Alpha is implemented here (coincidence matrix, ordinal distance) instead of depending on the
``krippendorff`` package: it is thirty lines, and the tests check it against the package's and
Krippendorff's published values. Units rated by fewer than two raters carry no information
about agreement and are dropped, as the method prescribes.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = [
    "krippendorff_alpha_ordinal",
    "alpha_ordinal_from_counts",
    "coincidence_matrix",
    "self_consistency",
]


def krippendorff_alpha_ordinal(data: np.ndarray | Sequence[Sequence[float]]) -> float:
    """Alpha for ordinal data; ``data`` is raters x units with NaN where a rater gave no value.

    Returns NaN when there is nothing to measure (fewer than two pairable values, or a single
    value used throughout, where expected disagreement is zero).
    """
    table = np.asarray(data, dtype=np.float64)
    if table.ndim != 2:
        raise ValueError(f"data must be raters x units (2-D), got shape {table.shape}")
    present = ~np.isnan(table)
    values = np.unique(table[present])
    if len(values) < 2:
        return float("nan")
    rater, unit = np.nonzero(present)
    counts = np.zeros((table.shape[1], len(values)))
    np.add.at(counts, (unit, np.searchsorted(values, table[rater, unit])), 1.0)
    return alpha_ordinal_from_counts(counts)


def coincidence_matrix(counts: np.ndarray) -> np.ndarray:
    """Krippendorff's coincidence matrix of ``counts`` (units x ordered values: how many raters
    gave each value to each unit); units with fewer than two values are dropped.

    Vectorised (``C^T diag(w) C - diag(w C)`` with ``w = 1 / (m_u - 1)``), so the operator's
    dashboard can recompute alpha at many points in time from per-unit counts alone.
    """
    counts = np.asarray(counts, dtype=np.float64)
    if counts.ndim != 2:
        raise ValueError(f"counts must be units x values (2-D), got shape {counts.shape}")
    m = counts.sum(axis=1)
    pairable = counts[m >= 2]
    weight = 1.0 / (m[m >= 2] - 1.0)
    return pairable.T @ (pairable * weight[:, None]) - np.diag(weight @ pairable)


def alpha_ordinal_from_counts(counts: np.ndarray) -> float:
    """Ordinal alpha from units x values counts (columns in the values' order; a value nobody
    used may have a column of zeros: it changes nothing). NaN when nothing can be measured."""
    coincidence = coincidence_matrix(counts)
    n_c = coincidence.sum(axis=0)
    n = n_c.sum()
    if n < 2 or np.count_nonzero(n_c) < 2:
        return float("nan")
    # Ordinal distance: (sum of n_g for g from c to k, minus half the ends), squared.
    cumulative = np.cumsum(n_c)
    low, high = np.triu_indices(len(n_c), 1)
    d = cumulative[high] - cumulative[low] + n_c[low] - (n_c[low] + n_c[high]) / 2.0
    delta = np.zeros_like(coincidence)
    delta[low, high] = delta[high, low] = d * d
    observed = (coincidence * delta).sum()
    expected = (np.outer(n_c, n_c) * delta).sum() / (n - 1)
    if expected == 0:
        return float("nan")
    return float(1.0 - observed / expected)


def self_consistency(first: np.ndarray, second: np.ndarray, n_levels: int) -> dict[str, float]:
    """How a rater's repeat ratings compare with their first ratings of the same clips.

    ``exact``: fraction identical; ``within_one``: fraction at most one level apart;
    ``mean_abs_diff`` in levels, and ``n`` pairs. Values are NaN with no pairs.
    """
    first = np.asarray(first, dtype=np.float64)
    second = np.asarray(second, dtype=np.float64)
    if first.shape != second.shape:
        raise ValueError(f"first {first.shape} and second {second.shape} must match")
    if first.size == 0:
        nan = float("nan")
        return {"n": 0, "exact": nan, "within_one": nan, "mean_abs_diff": nan}
    diff = np.abs(first - second)
    del n_levels  # kept in the signature so callers state the scale; differences are in levels
    return {
        "n": int(first.size),
        "exact": float(np.mean(diff == 0)),
        "within_one": float(np.mean(diff <= 1)),
        "mean_abs_diff": float(diff.mean()),
    }
