"""Tests for ratingrl.rewards.soft_rank: soft_rank / soft_sort (L2, Blondel et al. 2020).

Three independent references are used: the definition itself (a projection onto the
permutahedron, solved by a generic QP solver), the paper's own reduction (Prop. 3, descending
convention) written with a plain Python PAV that torch autograd differentiates, and torchsort
when it is installed.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from scipy.optimize import minimize

from ratingrl import soft_rank as exported_soft_rank
from ratingrl.rewards import isotonic
from ratingrl.rewards import soft_rank as soft_rank_module
from ratingrl.rewards.soft_rank import soft_rank, soft_sort

OPS = (soft_rank, soft_sort)


def ours(op, values, strength=1.0):
    return op(values, regularization_strength=strength, backend="torch")


def distinct_values(*shape, seed=0, dtype=torch.float64):
    """Random values whose sorted gaps are >= 0.4, so finite differences never cross a tie."""
    gen = torch.Generator().manual_seed(seed)
    n = shape[-1]
    rows = [torch.randperm(n, generator=gen).to(dtype) for _ in range(int(np.prod(shape[:-1])))]
    base = torch.stack(rows).reshape(shape)
    jitter = 0.3 * torch.rand(shape, generator=gen, dtype=dtype)
    return base * 0.7 + jitter  # rank order from randperm, gaps >= 0.4


# --- slow references ------------------------------------------------------------------------


def pav_torch(y: torch.Tensor, increasing: bool) -> torch.Tensor:
    """Plain pool-adjacent-violators on a 1-D tensor; autograd flows through the block means."""
    sign = 1.0 if increasing else -1.0
    blocks: list[list] = []  # [sum, count]
    for value in sign * y:
        blocks.append([value, 1])
        while len(blocks) > 1 and blocks[-2][0] / blocks[-2][1] > blocks[-1][0] / blocks[-1][1]:
            total, count = blocks.pop()
            blocks[-1][0] = blocks[-1][0] + total
            blocks[-1][1] += count
    fitted = [(total / count).expand(count) for total, count in blocks]
    return sign * torch.cat(fitted)


def project_permutahedron_paper(z: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Blondel et al. Prop. 3: P(z, w) = z - iso_down(z_sorted_desc - w_desc) unsorted."""
    order = torch.argsort(z, descending=True)
    s = z[order]
    primal = s - pav_torch(s - torch.sort(w, descending=True).values, increasing=False)
    return torch.empty_like(z).scatter(0, order, primal)


def reference_rank(theta: torch.Tensor, eps: float) -> torch.Tensor:
    """Ascending soft rank = projection of theta / eps onto the permutahedron of (1..n)."""
    n = theta.shape[-1]
    p = torch.arange(1, n + 1, dtype=theta.dtype)
    return project_permutahedron_paper(theta / eps, p)


def reference_sort(theta: torch.Tensor, eps: float) -> torch.Tensor:
    """Ascending soft sort = projection of (1..n) / eps onto the permutahedron of theta.

    Written as the paper's descending sort of -theta, negated.
    """
    n = theta.shape[-1]
    rho = torch.arange(n, 0, -1, dtype=theta.dtype)
    return -project_permutahedron_paper(rho / eps, -theta)


def project_by_qp(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """argmin ||mu - x||^2 over the permutahedron of w, from its facet description.

    mu is in P(w) iff sum(mu) = sum(w) and, for every subset S, sum(mu[S]) <= sum of the |S|
    largest entries of w. Exponential, so only for tiny n; independent of any sorting trick.
    """
    n = len(x)
    top = np.cumsum(np.sort(w)[::-1])
    subsets = [s for k in range(1, n) for s in itertools.combinations(range(n), k)]
    a = np.zeros((len(subsets), n))
    for row, subset in enumerate(subsets):
        a[row, list(subset)] = 1.0
    bounds = np.array([top[len(s) - 1] for s in subsets])
    constraints = [
        {"type": "ineq", "fun": lambda mu: bounds - a @ mu, "jac": lambda mu: -a},
        {
            "type": "eq",
            "fun": lambda mu: np.array([mu.sum() - w.sum()]),
            "jac": lambda mu: np.ones((1, n)),
        },
    ]
    result = minimize(
        lambda mu: 0.5 * np.sum((mu - x) ** 2),
        x0=np.full(n, w.mean()),
        jac=lambda mu: mu - x,
        constraints=constraints,
        method="SLSQP",
        options={"ftol": 1e-14, "maxiter": 500},
    )
    assert result.success, result.message
    return result.x


# --- gradients ------------------------------------------------------------------------------


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("shape", [(6,), (3, 5)])
@pytest.mark.parametrize("strength", [0.3, 1.0, 4.0])
def test_gradcheck(op, shape, strength):
    x = distinct_values(*shape, seed=len(shape)).requires_grad_()
    assert torch.autograd.gradcheck(lambda v: ours(op, v, strength), (x,))


@pytest.mark.parametrize("op", OPS)
def test_gradgradcheck_backward_is_differentiable(op):
    x = distinct_values(2, 5, seed=3).requires_grad_()
    assert torch.autograd.gradgradcheck(lambda v: ours(op, v, 1.0), (x,))


@pytest.mark.parametrize(
    "op, reference", [(soft_rank, reference_rank), (soft_sort, reference_sort)]
)
@pytest.mark.parametrize("strength", [0.05, 0.5, 2.0, 20.0])
def test_matches_paper_reduction_forward_and_gradient(op, reference, strength):
    gen = torch.Generator().manual_seed(int(strength * 100))
    theta = torch.randn(4, 12, generator=gen, dtype=torch.float64)
    cotangent = torch.randn(4, 12, generator=gen, dtype=torch.float64)
    x = theta.clone().requires_grad_()
    out = ours(op, x, strength)
    (out * cotangent).sum().backward()
    for row in range(4):
        x_ref = theta[row].clone().requires_grad_()
        expected = reference(x_ref, strength)
        (expected * cotangent[row]).sum().backward()
        torch.testing.assert_close(out[row], expected.detach())
        torch.testing.assert_close(x.grad[row], x_ref.grad)


@pytest.mark.parametrize("seed", range(4))
def test_matches_permutahedron_projection_by_qp(seed):
    rng = np.random.default_rng(seed)
    n = 3 + seed % 3
    theta = rng.normal(size=n) * 2
    strength = [0.2, 1.0, 3.0, 10.0][seed]
    p = np.arange(1, n + 1, dtype=np.float64)
    rank = ours(soft_rank, torch.from_numpy(theta), strength).numpy()
    sort = ours(soft_sort, torch.from_numpy(theta), strength).numpy()
    np.testing.assert_allclose(rank, project_by_qp(theta / strength, p), atol=1e-6)
    np.testing.assert_allclose(sort, project_by_qp(p / strength, theta), atol=1e-6)


# --- limits ---------------------------------------------------------------------------------


def test_exact_hard_ranks_when_sorted_gaps_are_at_least_the_strength():
    values = torch.tensor([[30.0, -10.0, 0.0, 20.0, 10.0], [5.0, 4.0, 3.0, 2.0, 1.0]])
    hard_ranks = values.argsort(1).argsort(1) + 1.0
    assert torch.equal(ours(soft_rank, values, 1.0), hard_ranks)  # gaps 10 and 1 >= 1
    assert not torch.equal(ours(soft_rank, values, 1.5), hard_ranks)  # gap 1 < 1.5


def test_exact_hard_sort_when_sorted_gaps_are_at_most_one_over_strength():
    values = torch.tensor([[30.0, -10.0, 0.0, 20.0, 10.0], [5.0, 4.0, 3.0, 2.0, 1.0]])
    assert torch.equal(ours(soft_sort, values, 0.1), values.sort(1).values)  # gaps <= 10
    # Wider gaps are pooled: soft_sort's strength acts on 1 / value units (as in torchsort).
    pooled = ours(soft_sort, torch.tensor([0.0, 100.0]), 1.0)
    assert torch.equal(pooled, torch.tensor([49.5, 50.5]))


@pytest.mark.parametrize("n", [2, 7, 50])
def test_huge_strength_gives_mean_rank_and_mean_value(n):
    values = torch.randn(3, n, dtype=torch.float64)
    ranks = ours(soft_rank, values, 1e9)
    torch.testing.assert_close(ranks, torch.full_like(ranks, (n + 1) / 2))
    sorted_ = ours(soft_sort, values, 1e9)
    torch.testing.assert_close(sorted_, values.mean(1, keepdim=True).expand_as(values))


def test_soft_rank_between_limits_is_strictly_between():
    values = torch.tensor([0.0, 0.5, 1.0, 3.0])
    ranks = ours(soft_rank, values, 1.0)
    hard = torch.tensor([1.0, 2.0, 3.0, 4.0])
    assert not torch.allclose(ranks, hard)
    assert torch.all(torch.diff(ranks) > 0)  # order preserved, but pulled together
    assert ranks[0] > 1.0 and ranks[-1] <= 4.0


@pytest.mark.parametrize("strength", [0.01, 0.7, 5.0])
def test_invariants_rank_sum_sort_sum_and_monotonicity(strength):
    values = torch.randn(5, 40, dtype=torch.float64)
    ranks = ours(soft_rank, values, strength)
    sorted_ = ours(soft_sort, values, strength)
    torch.testing.assert_close(ranks.sum(1), torch.full((5,), 40 * 41 / 2, dtype=torch.float64))
    torch.testing.assert_close(sorted_.sum(1), values.sum(1))
    assert torch.all(torch.diff(sorted_, dim=1) >= 0)
    order = values.argsort(1)
    assert torch.all(torch.diff(ranks.gather(1, order), dim=1) >= 0)


# --- edge cases -----------------------------------------------------------------------------


def test_ties_get_equal_ranks_and_finite_gradients():
    values = torch.tensor([0.0, 5.0, 5.0, 10.0], requires_grad=True)
    ranks = ours(soft_rank, values, 0.01)
    assert torch.equal(ranks.detach(), torch.tensor([1.0, 2.5, 2.5, 4.0]))
    ranks.sum().backward()
    assert torch.all(torch.isfinite(values.grad))
    sorted_ = ours(soft_sort, torch.tensor([5.0, 0.0, 5.0]), 0.01)
    assert torch.equal(sorted_, torch.tensor([0.0, 5.0, 5.0]))


def test_single_element():
    x = torch.tensor([3.5], requires_grad=True)
    rank = ours(soft_rank, x)
    assert torch.equal(rank.detach(), torch.tensor([1.0]))
    rank.backward(torch.tensor([1.0]))
    assert torch.equal(x.grad, torch.tensor([0.0]))  # a lone rank cannot move
    x.grad = None
    value = ours(soft_sort, x)
    assert torch.equal(value.detach(), x.detach())
    value.backward(torch.tensor([1.0]))
    assert torch.equal(x.grad, torch.tensor([1.0]))


@pytest.mark.parametrize("shape", [(0,), (3, 0), (0, 4)])
@pytest.mark.parametrize("op", OPS)
def test_empty_input_returns_empty(op, shape):
    out = ours(op, torch.empty(shape))
    assert out.shape == shape


@pytest.mark.parametrize("op", OPS)
def test_rows_are_independent(op):
    values = torch.randn(4, 9, dtype=torch.float64) * torch.tensor([[1.0], [100.0], [0.01], [1e4]])
    batched = ours(op, values, 0.5)
    for row in range(4):
        torch.testing.assert_close(batched[row], ours(op, values[row], 0.5), rtol=0, atol=1e-12)
    changed = values.clone()
    changed[2] = torch.randn(9, dtype=torch.float64)
    other_rows = [0, 1, 3]
    torch.testing.assert_close(ours(op, changed, 0.5)[other_rows], batched[other_rows])
    x = values.clone().requires_grad_()
    ours(op, x, 0.5)[2].sum().backward()
    assert torch.all(x.grad[other_rows] == 0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
@pytest.mark.parametrize("op", OPS)
def test_dtype_and_device_preserved(op, dtype):
    x = torch.randn(3, 6).to(dtype).requires_grad_()
    out = ours(op, x)
    assert out.dtype == dtype and out.device == x.device and out.shape == x.shape
    out.sum().backward()
    assert x.grad.dtype == dtype


@pytest.mark.parametrize("op", OPS)
def test_non_contiguous_input(op):
    values = torch.randn(7, 5, dtype=torch.float64)
    torch.testing.assert_close(ours(op, values.t()), ours(op, values.t().contiguous()))


def test_batched_pav_matches_per_row_pav_and_overflow_fallback():
    rng = np.random.default_rng(0)
    y = rng.normal(size=(6, 30)) * np.array([[1e-3], [1.0], [1e3], [1.0], [1e6], [5.0]])
    y[3] = np.arange(30.0)  # an already-increasing row: all singletons when increasing
    for increasing in (True, False):
        batched = isotonic.isotonic_blocks(y, increasing)
        per_row = isotonic.blocks_per_row(y, increasing)
        np.testing.assert_array_equal(batched.starts, per_row.starts)
        np.testing.assert_array_equal(batched.lengths, per_row.lengths)
        for start, length in zip(batched.starts, batched.lengths, strict=True):
            assert start // 30 == (start + length - 1) // 30  # no block crosses a row
    huge = np.array([[1e308, -1e308], [-1e308, 1e308]])  # row shifts would overflow
    assert isotonic.row_offsets(huge, increasing=True) is None
    blocks = isotonic.isotonic_blocks(huge, increasing=True)
    np.testing.assert_array_equal(blocks.starts, [0, 2, 3])  # row 0 pools, row 1 is sorted
    np.testing.assert_array_equal(blocks.lengths, [2, 1, 1])


def test_block_average_is_the_isotonic_jacobian():
    blocks = isotonic.Blocks(np.array([0, 2, 3]), np.array([2, 1, 3]))
    flat = torch.tensor([1.0, 3.0, 5.0, 0.0, 3.0, 6.0], dtype=torch.float64, requires_grad=True)
    averaged = soft_rank_module._BlockAverage.apply(flat, blocks)
    expected = torch.tensor([2.0, 2.0, 5.0, 3.0, 3.0, 3.0], dtype=torch.float64)
    torch.testing.assert_close(averaged, expected)
    assert torch.autograd.gradcheck(
        lambda v: soft_rank_module._BlockAverage.apply(v, blocks), (flat,)
    )


# --- argument checking and backends -------------------------------------------------------


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("shape", [(), (2, 3, 4)])
def test_bad_rank_raises(op, shape):
    with pytest.raises(ValueError, match=r"`values` must be 1-D .* got \d-D"):
        ours(op, torch.zeros(shape))


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("bad, shown", [(float("nan"), "nan"), (float("inf"), "inf")])
def test_non_finite_values_raise_with_position_and_value(op, bad, shown):
    values = torch.zeros(2, 3)
    values[1, 2] = bad
    with pytest.raises(ValueError, match=rf"`values` must be finite, but values\[1, 2\] = {shown}"):
        ours(op, values)


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("strength", [0.0, -1.0, float("nan"), float("inf")])
def test_bad_strength_raises(op, strength):
    with pytest.raises(ValueError, match=rf"`regularization_strength` .* got {strength}"):
        ours(op, torch.zeros(3), strength)


@pytest.mark.parametrize("op", OPS)
def test_strength_too_small_for_the_scale_raises(op):
    values = torch.tensor([1e300, -1e300], dtype=torch.float64)
    with pytest.raises(ValueError, match=r"`regularization_strength` = 1e-10 is too small"):
        ours(op, values, 1e-10)
    ours(op, values, 1e-5)  # 1e305 still fits in float64


def test_wrong_types_and_unknown_backend_raise():
    with pytest.raises(TypeError, match="floating-point"):
        soft_rank(torch.arange(3), backend="torch")
    with pytest.raises(TypeError, match="torch.Tensor"):
        soft_rank([1.0, 2.0], backend="torch")
    with pytest.raises(ValueError, match="`regularization_strength`"):
        soft_rank(torch.zeros(3), regularization_strength="1", backend="torch")
    with pytest.raises(ValueError, match=r"`backend` must be one of .* got 'jax'"):
        soft_rank(torch.zeros(3), backend="jax")


def test_backend_resolution_without_torchsort(monkeypatch):
    monkeypatch.setattr(soft_rank_module, "_import_torchsort", lambda: None)
    values = torch.randn(2, 8)
    torch.testing.assert_close(soft_rank(values), ours(soft_rank, values))
    with pytest.raises(ImportError, match="torchsort"):
        soft_sort(values, backend="torchsort")


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_auto_backend_keeps_half_precision_on_our_implementation(dtype):
    values = torch.randn(2, 6).to(dtype)
    assert torch.equal(soft_rank(values), ours(soft_rank, values))


def test_package_exports_the_same_function():
    assert exported_soft_rank is soft_rank


# --- parity with torchsort ------------------------------------------------------------------


@pytest.mark.parametrize("dtype, tol", [(torch.float64, 1e-9), (torch.float32, 2e-4)])
@pytest.mark.parametrize("name", ["soft_rank", "soft_sort"])
@pytest.mark.parametrize("strength", [0.01, 0.3, 1.0, 10.0])
def test_parity_with_torchsort(name, strength, dtype, tol):
    torchsort = pytest.importorskip("torchsort")
    gen = torch.Generator().manual_seed(7)
    values = (torch.randn(8, 64, generator=gen) * 3).to(dtype)
    cotangent = torch.randn(8, 64, generator=gen).to(dtype)
    mine, theirs = values.clone().requires_grad_(), values.clone().requires_grad_()
    out_mine = getattr(soft_rank_module, name)(mine, strength, backend="torch")
    out_theirs = getattr(torchsort, name)(theirs, regularization_strength=strength)
    torch.testing.assert_close(out_mine, out_theirs, rtol=tol, atol=tol)
    (out_mine * cotangent).sum().backward()
    (out_theirs * cotangent).sum().backward()
    torch.testing.assert_close(mine.grad, theirs.grad, rtol=tol, atol=tol)
    delegated = getattr(soft_rank_module, name)(values, strength, backend="torchsort")
    torch.testing.assert_close(delegated, out_theirs.detach())
