"""How much raters agree: Krippendorff's alpha (ordinal) and each rater's self-consistency.

Alpha is implemented here (coincidence matrix, ordinal distance) instead of depending on the
``krippendorff`` package: it is thirty lines, and the tests check it against the package's and
Krippendorff's published values. Units rated by fewer than two raters carry no information
about agreement and are dropped, as the method prescribes.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["krippendorff_alpha_ordinal", "self_consistency"]


def krippendorff_alpha_ordinal(data: np.ndarray | Sequence[Sequence[float]]) -> float:
    """Alpha for ordinal data; ``data`` is raters x units with NaN where a rater gave no value.

    Returns NaN when there is nothing to measure (fewer than two pairable values, or a single
    value used throughout, where expected disagreement is zero).
    """
    table = np.asarray(data, dtype=np.float64)
    if table.ndim != 2:
        raise ValueError(f"data must be raters x units (2-D), got shape {table.shape}")
    values = np.unique(table[~np.isnan(table)])
    if len(values) < 2:
        return float("nan")
    k = len(values)
    index = {v: i for i, v in enumerate(values)}
    coincidence = np.zeros((k, k))
    for unit in table.T:
        present = unit[~np.isnan(unit)]
        m = len(present)
        if m < 2:
            continue
        counts = np.zeros(k)
        for v in present:
            counts[index[v]] += 1
        pairs = np.outer(counts, counts) - np.diag(counts)
        coincidence += pairs / (m - 1)
    n_c = coincidence.sum(axis=0)
    n = n_c.sum()
    if n < 2:
        return float("nan")
    # Ordinal distance: (sum of n_g for g from c to k, minus half the ends), squared.
    cumulative = np.cumsum(n_c)
    delta = np.zeros((k, k))
    for c in range(k):
        for kk in range(c + 1, k):
            d = cumulative[kk] - cumulative[c] + n_c[c] - (n_c[c] + n_c[kk]) / 2.0
            delta[c, kk] = delta[kk, c] = d * d
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
