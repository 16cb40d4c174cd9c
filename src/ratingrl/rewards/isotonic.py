"""Blocks of a row-wise isotonic regression: the one sequential step of soft rank and sort.

An isotonic fit is constant on contiguous blocks (the block means of its input), and its
Jacobian averages a vector within each block, so :mod:`ratingrl.rewards.soft_rank` needs only
the block structure. It comes from scipy's compiled pool-adjacent-violators solver
(``scipy.optimize.isotonic_regression``), all rows of a batch in one call where possible.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.optimize import isotonic_regression

__all__ = ["Blocks", "isotonic_blocks", "blocks_per_row", "row_offsets"]



class Blocks:
    """Contiguous blocks of a row-wise isotonic fit, indexed in the flattened (row-major) batch.

    An isotonic fit is the block mean of its input on each block, and its Jacobian averages a
    vector within each block; both are one ``np.add.reduceat`` plus one ``np.repeat``.
    """

    def __init__(self, starts: np.ndarray, lengths: np.ndarray) -> None:
        self.starts = starts
        self.lengths = lengths
        self.singletons = len(starts) == int(lengths.sum())  # hard regime: nothing pooled

    def mean(self, flat: np.ndarray) -> np.ndarray:
        """Block means of the float64 vector ``flat``, broadcast back to every element."""
        if self.singletons:
            return flat
        return np.repeat(np.add.reduceat(flat, self.starts) / self.lengths, self.lengths)

    def mean_index(self) -> np.ndarray:
        """Block means of the flat index ``0..size-1``, in closed form (exact half-integers)."""
        return np.repeat(self.starts + (self.lengths - 1) / 2.0, self.lengths)


def isotonic_blocks(y: np.ndarray, increasing: bool) -> Blocks:
    """Blocks of the row-wise isotonic regression of ``y`` (shape ``(batch, n)``, float64).

    ``increasing`` selects a non-decreasing (else non-increasing) fit. Blocks never cross rows.
    """
    offsets = row_offsets(y, increasing)
    if offsets is not None:
        flat = (y + offsets[:, None]).ravel()
        edges = isotonic_regression(flat, increasing=increasing).blocks
        if _respects_rows(edges, y.shape):
            return Blocks(edges[:-1], np.diff(edges))
    return blocks_per_row(y, increasing)


def row_offsets(y: np.ndarray, increasing: bool) -> np.ndarray | None:
    """Per-row shifts that let one PAV call solve all rows at once.

    Shifting row ``k`` by ``k * (2 * span + 1)`` (down for non-increasing fits) puts every
    entry of a row strictly beyond every entry of the previous row, so the monotone constraint
    between rows is slack and PAV never pools across them; that replaces a Python loop of
    ``batch`` scipy calls with one call. Only the block structure is kept (means are recomputed
    from the unshifted data), so the shift just has to keep the pooling decisions right.
    Returns None when there is a single row or the shifts would overflow.
    """
    rows = y.shape[0]
    if rows == 1:
        return None
    high, low = float(y.max()), float(y.min())
    step = 2.0 * (high - low) + 1.0  # Python floats: overflow gives inf, not a warning
    if not math.isfinite(step * rows + abs(high) + abs(low)):
        return None
    offsets = np.arange(rows, dtype=np.float64) * step
    return offsets if increasing else -offsets


def _respects_rows(edges: np.ndarray, shape: tuple[int, int]) -> bool:
    """True when every row boundary is a block edge (a cheap guard on the shifting trick)."""
    rows, n = shape
    boundaries = np.arange(rows + 1) * n
    found = np.searchsorted(edges, boundaries)
    return bool(np.all(found < len(edges)) and np.array_equal(edges[found], boundaries))


def blocks_per_row(y: np.ndarray, increasing: bool) -> Blocks:
    """Fallback: one PAV call per row (never per element)."""
    n = y.shape[1]
    starts = np.concatenate(
        [
            isotonic_regression(row, increasing=increasing).blocks[:-1] + k * n
            for k, row in enumerate(y)
        ]
    )
    return Blocks(starts, np.diff(np.append(starts, y.size)))
