"""Differentiable soft rank and soft sort with L2 regularisation (Blondel et al., ICML 2020).

Rating-based reward learning compares *ranks* of predicted returns with the ranks the teacher
gave, but hard ranks are piecewise constant, so their gradient is zero almost everywhere.
Blondel et al. ("Fast Differentiable Sorting and Ranking", 2020) replace the linear program
behind sorting with a projection onto the permutahedron, which turns ranks into a smooth
function whose forward pass is a sort plus one isotonic regression.

With ``p = (1, 2, ..., n)``, ``eps`` the regularization strength and ``P(w)`` the permutahedron
(convex hull of all permutations of ``w``), the ascending operators are::

    soft_sort(theta) = argmin_{mu in P(theta)} ||mu - p / eps||^2
    soft_rank(theta) = argmin_{r in P(p)}      ||r - theta / eps||^2

As ``eps -> 0`` they become the hard sort and the hard ranks (1 for the smallest entry); as
``eps -> inf`` every output tends to the mean value, respectively the mean rank ``(n + 1) / 2``.
These are exactly ``torchsort.soft_sort`` / ``torchsort.soft_rank`` with ``regularization="l2"``.

Blondel et al. (Prop. 3) reduce each projection to isotonic regression on sorted inputs. With
``z`` sorted ascending (positions ``j = 1..n``), and ``iso_up`` / ``iso_down`` the best
non-decreasing / non-increasing least-squares fits::

    soft_rank: r_sorted = z - iso_up(z - p)        where z = sort(theta) / eps
    soft_sort: s        = iso_down(t - p / eps) + p / eps      where t = sort(theta)

An isotonic fit is constant on contiguous *blocks*, equal to the block mean of its input, so
both outputs only need the block structure (from a compiled pool-adjacent-violators solver,
``scipy.optimize.isotonic_regression``) and block means. The same structure gives the exact
backward pass: the Jacobian of isotonic regression averages the incoming gradient within each
block. Everything is O(n log n) time (the sort) and O(n) memory; no n x n matrix is ever formed.
"""

from __future__ import annotations

import functools
import importlib
import math
from types import ModuleType
from typing import Literal

import numpy as np
import torch
from scipy.optimize import isotonic_regression

__all__ = ["soft_rank", "soft_sort"]

Backend = Literal["auto", "torch", "torchsort"]
_BACKENDS = ("auto", "torch", "torchsort")


def soft_rank(
    values: torch.Tensor, regularization_strength: float = 1.0, backend: Backend = "auto"
) -> torch.Tensor:
    """Differentiable ascending ranks of ``values`` (smallest entry gets rank ~1).

    Args:
        values: 1-D tensor of shape ``(n,)`` or 2-D tensor of shape ``(batch, n)``; each row is
            ranked independently. Floating point, finite.
        regularization_strength: ``eps > 0``. Entries further apart than about ``eps`` get
            (almost) their hard ranks; a large ``eps`` pulls every rank towards ``(n + 1) / 2``.
            It is in the units of ``values``, so scale it with them.
        backend: ``"torch"`` for this module's implementation, ``"torchsort"`` for the compiled
            torchsort extension (ImportError if it is missing), ``"auto"`` for torchsort when
            it can be imported and this module otherwise. Both give the same values.

    Returns:
        Ranks with the shape, dtype and device of ``values``, differentiable w.r.t. ``values``.

    Raises:
        ValueError: for 0-D or >2-D input, NaN/inf entries, a non-positive strength or an
            unknown backend.

    Example:
        >>> import torch
        >>> soft_rank(torch.tensor([3.0, 1.0, 2.0]), regularization_strength=0.1, backend="torch")
        tensor([3., 1., 2.])
        >>> soft_rank(torch.tensor([3.0, 1.0, 2.0]), regularization_strength=100.0, backend="torch")
        tensor([2.0100, 1.9900, 2.0000])
    """
    return _dispatch("soft_rank", values, regularization_strength, backend)


def soft_sort(
    values: torch.Tensor, regularization_strength: float = 1.0, backend: Backend = "auto"
) -> torch.Tensor:
    """Differentiable ascending sort of ``values``.

    Args:
        values: 1-D tensor of shape ``(n,)`` or 2-D tensor of shape ``(batch, n)``; each row is
            sorted independently. Floating point, finite.
        regularization_strength: ``eps > 0``. Sorted neighbours that are more than about ``eps``
            apart keep their hard-sorted values; a large ``eps`` pulls every output towards the
            row mean (the row sum is always preserved).
        backend: ``"torch"``, ``"torchsort"`` or ``"auto"``; see :func:`soft_rank`.

    Returns:
        Soft-sorted values with the shape, dtype and device of ``values``, differentiable
        w.r.t. ``values``.

    Raises:
        ValueError: for 0-D or >2-D input, NaN/inf entries, a non-positive strength or an
            unknown backend.

    Example:
        >>> import torch
        >>> soft_sort(torch.tensor([3.0, 1.0, 2.0]), regularization_strength=0.1, backend="torch")
        tensor([1., 2., 3.])
        >>> soft_sort(torch.tensor([3.0, 1.0, 2.0]), regularization_strength=2.0, backend="torch")
        tensor([1.5000, 2.0000, 2.5000])
    """
    return _dispatch("soft_sort", values, regularization_strength, backend)


# --------------------------------------------------------------------------------------------
# Argument checking and backend dispatch
# --------------------------------------------------------------------------------------------


def _dispatch(name: str, values: torch.Tensor, strength: float, backend: str) -> torch.Tensor:
    """Validate once, then run either implementation on a 2-D view of ``values``."""
    _check_values(name, values)
    eps = _check_strength(name, strength)
    torchsort = _resolve_backend(name, backend)
    if values.numel() == 0:
        return values.clone()  # nothing to rank; clone keeps the autograd graph intact
    _check_scale(name, values, eps)
    matrix = values if values.dim() == 2 else values.unsqueeze(0)
    if torchsort is not None:
        out = getattr(torchsort, name)(matrix, regularization="l2", regularization_strength=eps)
    elif name == "soft_rank":
        out = _SoftRank.apply(matrix, eps)
    else:
        out = _SoftSort.apply(matrix, eps)
    return out if values.dim() == 2 else out.squeeze(0)


def _check_values(name: str, values: torch.Tensor) -> None:
    """Reject inputs that are not a 1-D/2-D floating-point tensor."""
    if not isinstance(values, torch.Tensor):
        raise TypeError(f"{name}: `values` must be a torch.Tensor, got {type(values).__name__}")
    if not values.is_floating_point():
        raise TypeError(f"{name}: `values` must be a floating-point tensor, got {values.dtype}")
    if values.dim() not in (1, 2):
        raise ValueError(
            f"{name}: `values` must be 1-D (n,) or 2-D (batch, n), "
            f"got {values.dim()}-D with shape {tuple(values.shape)}"
        )


def _check_strength(name: str, strength: float) -> float:
    """Return the strength as a float; it scales the inputs, so it must be finite and > 0."""
    if isinstance(strength, bool) or not isinstance(strength, (int, float, np.floating)):
        raise ValueError(
            f"{name}: `regularization_strength` must be a positive number, got {strength!r}"
        )
    eps = float(strength)
    if not (math.isfinite(eps) and eps > 0.0):
        raise ValueError(
            f"{name}: `regularization_strength` must be finite and > 0, got {strength!r}"
        )
    return eps


def _check_scale(name: str, values: torch.Tensor, eps: float) -> None:
    """Reject NaN/inf entries (they have no rank) and a strength so small that the scaled
    inputs ``values / eps`` or ``n / eps`` overflow. One min/max pass, which propagates NaN.
    """
    low, high = (float(v) for v in torch.aminmax(values.detach()))
    if not (math.isfinite(low) and math.isfinite(high)):
        finite = torch.isfinite(values.detach())
        index = tuple(int(i) for i in (~finite).nonzero()[0])
        raise ValueError(
            f"{name}: `values` must be finite, but values{list(index)} = "
            f"{values[index].item()} (NaN and inf have no rank)"
        )
    largest = max(abs(low), abs(high), values.shape[-1])
    if not math.isfinite(largest / eps):
        raise ValueError(
            f"{name}: `regularization_strength` = {eps!r} is too small for these values: "
            f"{largest!r} / {eps!r} overflows float64"
        )


def _resolve_backend(name: str, backend: str) -> ModuleType | None:
    """Return the torchsort module to delegate to, or None to use this module's code."""
    if backend not in _BACKENDS:
        raise ValueError(f"{name}: `backend` must be one of {_BACKENDS}, got {backend!r}")
    if backend == "torch":
        return None
    module = _import_torchsort()
    if backend == "torchsort" and module is None:
        raise ImportError(
            f"{name}: backend='torchsort' needs the optional `torchsort` package, which could "
            "not be imported; install it (it compiles a C++ extension) or use backend='torch'"
        )
    return module


@functools.cache
def _import_torchsort() -> ModuleType | None:
    """Import torchsort once; a missing or broken build (ABI mismatch) counts as absent."""
    try:
        return importlib.import_module("torchsort")
    except (ImportError, OSError):
        return None


# --------------------------------------------------------------------------------------------
# Isotonic block structure (the only sequential step; done by scipy's compiled PAV)
# --------------------------------------------------------------------------------------------


def _isotonic_blocks(y: np.ndarray, increasing: bool) -> tuple[np.ndarray, np.ndarray]:
    """Blocks of the row-wise isotonic regression of ``y`` (shape ``(batch, n)``, float64).

    Returns ``(starts, lengths)``: the flat (row-major) index where each block begins and its
    size, rows in order. Blocks never cross rows.
    """
    offsets = _row_offsets(y, increasing)
    if offsets is not None:
        flat = (y + offsets[:, None]).ravel()
        starts = isotonic_regression(flat, increasing=increasing).blocks
        if _respects_rows(starts, y.shape):
            return starts[:-1], np.diff(starts)
    return _blocks_per_row(y, increasing)


def _row_offsets(y: np.ndarray, increasing: bool) -> np.ndarray | None:
    """Per-row shifts that let one PAV call solve all rows at once.

    Shifting row ``k`` by ``k * (2 * span + 1)`` (down for non-increasing fits) puts every
    entry of a row strictly beyond every entry of the previous row, so the monotone constraint
    between rows is slack and PAV never pools across them; that replaces a Python loop of
    ``batch`` scipy calls with one call. Block means are later recomputed from the unshifted
    data, so the shift only has to keep the pooling decisions right. Returns None when there is
    a single row or the shifts would overflow.
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


def _respects_rows(starts: np.ndarray, shape: tuple[int, int]) -> bool:
    """True when every row boundary is a block boundary (guards the shifting trick)."""
    rows, n = shape
    flags = np.zeros(rows * n + 1, dtype=bool)
    flags[starts] = True
    return bool(flags[::n].all())


def _blocks_per_row(y: np.ndarray, increasing: bool) -> tuple[np.ndarray, np.ndarray]:
    """Fallback: one PAV call per row (never per element)."""
    n = y.shape[1]
    starts = [
        isotonic_regression(row, increasing=increasing).blocks[:-1] + k * n
        for k, row in enumerate(y)
    ]
    flat_starts = np.concatenate(starts)
    return flat_starts, np.diff(np.append(flat_starts, y.size))


# --------------------------------------------------------------------------------------------
# Block means
# --------------------------------------------------------------------------------------------


def _block_mean(flat: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Mean of ``flat`` over each contiguous block, broadcast back to every element."""
    return np.repeat(np.add.reduceat(flat, starts) / lengths, lengths)


def _block_mean_position(starts: np.ndarray, lengths: np.ndarray, n: int) -> np.ndarray:
    """Block mean of the 1-based within-row position ``p``, in closed form (no reduction)."""
    first = starts % n + 1
    return np.repeat(first + (lengths - 1) / 2.0, lengths)


def _positions(n: int) -> np.ndarray:
    """The within-row positions ``p = 1..n`` as float64."""
    return np.arange(1, n + 1, dtype=np.float64)


class _Blocks:
    """Block structure of one forward pass, kept as torch tensors for the backward pass."""

    def __init__(self, starts: np.ndarray, lengths: np.ndarray, device: torch.device) -> None:
        self.segment = torch.from_numpy(np.repeat(np.arange(len(lengths)), lengths)).to(device)
        self.lengths = torch.from_numpy(lengths).to(device)

    def mean(self, flat: torch.Tensor) -> torch.Tensor:
        """Block-average ``flat``: the (symmetric) Jacobian of isotonic regression applied to it.

        Built from differentiable torch ops on constant indices, so the backward pass is itself
        differentiable (the second derivative is zero almost everywhere, as it should be).
        """
        sums = flat.new_zeros(len(self.lengths)).index_add(0, self.segment, flat)
        return (sums / self.lengths.to(flat.dtype))[self.segment]


# --------------------------------------------------------------------------------------------
# Forward passes (numpy, float64) and autograd Functions
# --------------------------------------------------------------------------------------------


def _sorted_rows(values: torch.Tensor) -> tuple[np.ndarray, torch.Tensor]:
    """Row-wise ascending sort: float64 sorted values and the int64 sorting permutation."""
    sorted_values, order = torch.sort(values.detach(), dim=1)
    return sorted_values.to(torch.float64).cpu().numpy(), order


def _soft_rank_forward(
    values: torch.Tensor, eps: float
) -> tuple[torch.Tensor, torch.Tensor, _Blocks]:
    """Soft ranks ``r = z - iso_up(z - p)`` with ``z = sort(values) / eps``.

    On a block ``B`` the fit is ``mean_B(z) - mean_B(p)``, so ``r = (z - mean_B z) + mean_B p``;
    written this way a singleton block yields its position exactly (integer hard ranks).
    """
    z, order = _sorted_rows(values)
    z /= eps
    rows, n = z.shape
    starts, lengths = _isotonic_blocks(z - _positions(n), increasing=True)
    flat = z.ravel()
    ranks = (flat - _block_mean(flat, starts, lengths)) + _block_mean_position(starts, lengths, n)
    ranks_sorted = torch.from_numpy(ranks.reshape(rows, n)).to(values.device, values.dtype)
    out = torch.empty_like(values).scatter_(1, order, ranks_sorted)
    return out, order, _Blocks(starts, lengths, values.device)


def _soft_sort_forward(
    values: torch.Tensor, eps: float
) -> tuple[torch.Tensor, torch.Tensor, _Blocks]:
    """Soft sort ``s = iso_down(t - p / eps) + p / eps`` with ``t = sort(values)``.

    On a block the output is ``mean_B(t) + (p - mean_B p) / eps``: exact hard-sorted values for
    singleton blocks, and a block of equal-spaced values (step ``1 / eps``) around the mean
    otherwise.
    """
    t, order = _sorted_rows(values)
    rows, n = t.shape
    p = _positions(n)
    starts, lengths = _isotonic_blocks(t - p / eps, increasing=False)
    flat = t.ravel()
    p_flat = np.tile(p, rows)
    out = (
        _block_mean(flat, starts, lengths)
        + (p_flat - _block_mean_position(starts, lengths, n)) / eps
    )
    result = torch.from_numpy(out.reshape(rows, n)).to(values.device, values.dtype)
    return result, order, _Blocks(starts, lengths, values.device)


def _work_dtype(grad: torch.Tensor) -> torch.Tensor:
    """Half-precision gradients are averaged in float32 to keep block sums accurate."""
    return grad.to(torch.promote_types(grad.dtype, torch.float32))


class _SoftRank(torch.autograd.Function):
    """``soft_rank`` on a 2-D tensor with the analytic vector-Jacobian product.

    ``r_sorted = z - iso_up(z - p)`` gives ``dL/dz = g - blockmean(g)`` (``g`` in sorted order),
    which is scattered back through the sorting permutation and divided by ``eps``.
    """

    @staticmethod
    def forward(ctx, values: torch.Tensor, eps: float) -> torch.Tensor:
        out, order, blocks = _soft_rank_forward(values, eps)
        ctx.save_for_backward(order)
        ctx.blocks, ctx.eps = blocks, eps
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        (order,) = ctx.saved_tensors
        work = _work_dtype(grad)
        g_sorted = work.gather(1, order).reshape(-1)
        g_sorted = (g_sorted - ctx.blocks.mean(g_sorted)).view_as(order) / ctx.eps
        return torch.zeros_like(work).scatter(1, order, g_sorted).to(grad.dtype), None


class _SoftSort(torch.autograd.Function):
    """``soft_sort`` on a 2-D tensor with the analytic vector-Jacobian product.

    ``s = iso_down(t - p / eps) + p / eps`` gives ``dL/dt = blockmean(g)``, scattered back to
    the original positions through the sorting permutation.
    """

    @staticmethod
    def forward(ctx, values: torch.Tensor, eps: float) -> torch.Tensor:
        out, order, blocks = _soft_sort_forward(values, eps)
        ctx.save_for_backward(order)
        ctx.blocks = blocks
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        (order,) = ctx.saved_tensors
        work = _work_dtype(grad)
        g_sorted = ctx.blocks.mean(work.reshape(-1)).view_as(order)
        return torch.zeros_like(work).scatter(1, order, g_sorted).to(grad.dtype), None
