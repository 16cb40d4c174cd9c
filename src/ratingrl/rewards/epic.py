"""EPIC distance: how far apart two reward functions are, without training a policy on either.

Gleave, Dennis, Legg, Russell and Leike (2021), "Quantifying differences in reward functions"
(ICLR). Two rewards that differ only by potential shaping ``gamma * phi(s') - phi(s)``, a
positive scale or a constant induce the same optimal policies in every environment with those
states and actions, so a distance between rewards should not see those differences. EPIC first
maps each reward to a *canonical* one, which removes any potential shaping:

    C(R)(s, a, s') = R(s, a, s') + E[gamma R(s', A, S') - R(s, A, S') - gamma R(S, A, S')]

with ``S, S' ~ D_S`` and ``A ~ D_A`` independent (the coverage distributions), and then takes
the Pearson distance ``sqrt((1 - rho) / 2)`` of the two canonical rewards over transitions from
a distribution ``D``. The result lies in [0, 1]: 0 for equivalent rewards, 1 for a reward and
its negation, about ``sqrt(1/2)`` for unrelated ones. Pearson correlation ignores positive
scale and constant shifts, which is why the canonical rewards need no normalisation.

This module holds the arithmetic only, on arrays: exactly on a table of rewards, and from
samples (:class:`RewardSamples`), which is how rewards of continuous tasks are compared.
Sampling transitions and querying a simulator for the true reward is
``ratingrl.experiments.epic``'s job.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = [
    "pearson_distance",
    "canonicalize",
    "epic_distance",
    "RewardSamples",
    "epic_from_samples",
]


def _distribution(p: np.ndarray | None, n: int, name: str) -> np.ndarray:
    if p is None:
        return np.full(n, 1.0 / n)
    p = np.asarray(p, dtype=np.float64)
    if p.shape != (n,):
        raise ValueError(f"{name} has shape {p.shape}, expected ({n},)")
    if (p < 0).any() or not np.isfinite(p).all() or p.sum() <= 0:
        raise ValueError(f"{name} must be finite, non-negative and not all zero, got {p}")
    return p / p.sum()


def pearson_distance(x: np.ndarray, y: np.ndarray, weights: np.ndarray | None = None) -> float:
    """``sqrt((1 - rho) / 2)`` with ``rho`` the (weighted) Pearson correlation of ``x`` and ``y``.

    A metric on rewards up to positive affine maps (Gleave et al. 2021, section 4): 0 when ``y``
    is a positive affine function of ``x``, 1 when a negative one. NaN when either is constant,
    because a reward equivalent to zero has no direction to agree with.
    """
    x = np.asarray(x, dtype=np.float64).ravel()
    y = np.asarray(y, dtype=np.float64).ravel()
    if x.shape != y.shape or x.size < 2:
        raise ValueError(f"x and y need equal sizes of at least 2, got {x.size} and {y.size}")
    w = _distribution(None if weights is None else np.ravel(weights), x.size, "weights")
    dx, dy = x - w @ x, y - w @ y
    var_x, var_y = w @ (dx * dx), w @ (dy * dy)
    # a spread at rounding level (a constant stored as float32, say) is no spread at all
    tiny = 1e-24 * max(w @ (x * x), w @ (y * y), 1e-300)
    if var_x <= tiny or var_y <= tiny:
        return float("nan")
    rho = float(np.clip(w @ (dx * dy) / np.sqrt(var_x * var_y), -1.0, 1.0))
    return float(np.sqrt((1.0 - rho) / 2.0))


def canonicalize(
    rewards: np.ndarray,
    gamma: float,
    state_dist: np.ndarray | None = None,
    action_dist: np.ndarray | None = None,
) -> np.ndarray:
    """The canonically shaped reward ``C(R)`` of a tabular reward ``R[s, a, s']``, exactly.

    ``state_dist`` (``D_S``) and ``action_dist`` (``D_A``) default to uniform. Any potential
    shaping of ``R`` cancels in ``C(R)`` (Gleave et al. 2021, proposition 1), so two rewards that
    differ by shaping have equal canonical forms.
    """
    r = np.asarray(rewards, dtype=np.float64)
    if r.ndim != 3 or r.shape[0] != r.shape[2]:
        raise ValueError(f"rewards must have shape [S, A, S], got {r.shape}")
    _check_gamma(gamma)
    p_s = _distribution(state_dist, r.shape[0], "state_dist")
    p_a = _distribution(action_dist, r.shape[1], "action_dist")
    mean_from = np.einsum("xay,a,y->x", r, p_a, p_s)  # E[R(x, A, S')] for each state x
    mean_all = float(p_s @ mean_from)  # E[R(S, A, S')]
    return r + gamma * mean_from[None, None, :] - mean_from[:, None, None] - gamma * mean_all


def epic_distance(
    reward_a: np.ndarray,
    reward_b: np.ndarray,
    gamma: float,
    state_dist: np.ndarray | None = None,
    action_dist: np.ndarray | None = None,
    transition_dist: np.ndarray | None = None,
) -> float:
    """EPIC distance of two tabular rewards ``[S, A, S']``, exactly.

    ``transition_dist`` (``D``, shape ``[S, A, S']``) weighs the transitions the canonical
    rewards are compared on; uniform by default.
    """
    ca = canonicalize(reward_a, gamma, state_dist, action_dist)
    cb = canonicalize(reward_b, gamma, state_dist, action_dist)
    if ca.shape != cb.shape:
        raise ValueError(f"reward_a has shape {ca.shape} but reward_b {cb.shape}")
    weights = None
    if transition_dist is not None:
        weights = np.asarray(transition_dist, dtype=np.float64)
        if weights.shape != ca.shape:
            raise ValueError(f"transition_dist has shape {weights.shape}, expected {ca.shape}")
    return pearson_distance(ca, cb, weights)


@dataclass(frozen=True)
class RewardSamples:
    """One reward evaluated where the sample-based EPIC needs it.

    For N transitions ``(s_i, a_i, s'_i) ~ D`` and M coverage samples ``(A_j, S'_j)``:
    ``at_transitions[i] = R(s_i, a_i, s'_i)``, ``from_states[i, j] = R(s_i, A_j, S'_j)`` and
    ``from_next[i, j] = R(s'_i, A_j, S'_j)``. Both rewards compared must be evaluated on the same
    samples: then the estimate is the exact EPIC distance under the empirical coverage
    distributions, and any shaping cancels exactly rather than up to sampling error.
    """

    at_transitions: np.ndarray
    from_states: np.ndarray
    from_next: np.ndarray

    def __post_init__(self) -> None:
        r = np.asarray(self.at_transitions, dtype=np.float64)
        if r.ndim != 1 or r.size == 0:
            raise ValueError(f"at_transitions must be a non-empty vector, got shape {r.shape}")
        object.__setattr__(self, "at_transitions", r)
        for name in ("from_states", "from_next"):
            value = np.asarray(getattr(self, name), dtype=np.float64)
            if value.ndim != 2 or value.shape[0] != r.size or value.shape[1] == 0:
                raise ValueError(f"{name} has shape {value.shape}, expected ({r.size}, M >= 1)")
            object.__setattr__(self, name, value)
        if self.from_states.shape != self.from_next.shape:
            raise ValueError(
                f"from_states has shape {self.from_states.shape} but from_next "
                f"{self.from_next.shape}"
            )

    def canonical(self, gamma: float) -> np.ndarray:
        """``C(R)`` at the N transitions, less the constant ``gamma * E[R(S, A, S')]``.

        That constant moves every canonical reward by the same amount, so it cannot change a
        Pearson distance and is not estimated (it would cost M more evaluations per state).
        """
        _check_gamma(gamma)
        return (
            self.at_transitions
            + gamma * self.from_next.mean(axis=1)
            - self.from_states.mean(axis=1)
        )


def epic_from_samples(a: RewardSamples, b: RewardSamples, gamma: float) -> float:
    """EPIC distance of two rewards evaluated on the same samples (see :class:`RewardSamples`)."""
    if a.from_states.shape != b.from_states.shape:
        raise ValueError(
            f"the rewards were evaluated on different samples: {a.from_states.shape} and "
            f"{b.from_states.shape} (N transitions x M coverage samples)"
        )
    return pearson_distance(a.canonical(gamma), b.canonical(gamma))


def _check_gamma(gamma: float) -> None:
    if not 0.0 <= gamma <= 1.0:
        raise ValueError(f"gamma must be in [0, 1], got {gamma}")
