"""Which segments to ask about: uniform, ensemble disagreement, entropy, R4's stratified rule.

A selector sees candidate segments and a ``returns_fn(obs [N, H, d], acts) -> [E, N]`` giving
each ensemble member's predicted return, and returns the indices to query. Taking a function
instead of a reward model keeps ``feedback/`` free of torch and of ``rewards/``: the online loop
passes ``model.predict_returns``.

All randomness comes from the ``np.random.Generator`` passed in; ties are broken at random so
equal scores (e.g. an untrained ensemble) do not always favour the first candidates.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from ratingrl.feedback.segments import FeedbackError, SegmentSet

__all__ = [
    "ReturnsFn",
    "QuerySelector",
    "UniformSelector",
    "DisagreementSelector",
    "EntropySelector",
    "StratifiedSelector",
    "SELECTORS",
    "make_selector",
    "rating_entropy",
    "preference_entropy",
    "select_pairs",
    "PairSelector",
    "PAIR_SELECTORS",
]

ReturnsFn = Callable[[np.ndarray, np.ndarray], np.ndarray]
"""``(obs [N, H, obs_dim], acts [N, H, act_dim]) -> [E, N]`` predicted segment returns."""


class QuerySelector(Protocol):
    def select(
        self, candidates: SegmentSet, k: int, returns_fn: ReturnsFn, rng: np.random.Generator
    ) -> np.ndarray:
        """Indices of the ``k`` candidates to query (distinct)."""
        ...


def _check_k(k: int, n: int) -> None:
    if not 1 <= k <= n:
        raise FeedbackError(f"cannot select {k} queries from {n} candidates")


def _top_k(scores: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """Indices of the k highest scores, ties broken at random, in descending score order."""
    order = np.lexsort((rng.random(len(scores)), -scores))
    return order[:k]


def _returns(candidates: SegmentSet, returns_fn: ReturnsFn) -> np.ndarray:
    returns = np.asarray(returns_fn(candidates.obs, candidates.acts), dtype=np.float64)
    if returns.ndim != 2 or returns.shape[1] != len(candidates):
        raise FeedbackError(
            f"returns_fn must give [E, {len(candidates)}] returns, got shape {returns.shape}"
        )
    return returns


@dataclass(frozen=True)
class UniformSelector:
    """k candidates uniformly at random, without replacement (the baseline)."""

    def select(self, candidates, k, returns_fn, rng) -> np.ndarray:
        del returns_fn
        _check_k(k, len(candidates))
        return np.sort(rng.choice(len(candidates), k, replace=False))


@dataclass(frozen=True)
class DisagreementSelector:
    """The k candidates whose predicted return varies most across the ensemble."""

    def select(self, candidates, k, returns_fn, rng) -> np.ndarray:
        _check_k(k, len(candidates))
        return _top_k(_returns(candidates, returns_fn).std(axis=0), k, rng)


def rating_entropy(returns: np.ndarray, n_classes: int) -> np.ndarray:
    """Entropy of the members' votes for a rating class, per candidate (``returns [E, N]``).

    A member's class is where its return falls among the quantiles of the ensemble-mean returns
    of the candidates: the class a rater would give if the candidates spanned the scale.
    """
    edges = np.quantile(returns.mean(0), np.arange(1, n_classes) / n_classes)
    votes = np.searchsorted(edges, returns, side="right")  # [E, N]
    counts = np.stack([(votes == c).sum(0) for c in range(n_classes)])  # [C, N]
    p = counts / returns.shape[0]
    with np.errstate(divide="ignore", invalid="ignore"):
        return -np.where(p > 0, p * np.log(p), 0.0).sum(0)


@dataclass(frozen=True)
class EntropySelector:
    """The k candidates whose predicted rating class is most uncertain across the ensemble."""

    n_classes: int

    def select(self, candidates, k, returns_fn, rng) -> np.ndarray:
        _check_k(k, len(candidates))
        returns = _returns(candidates, returns_fn)
        # Ties are common (E votes take few values): break them by disagreement, then at random.
        score = rating_entropy(returns, self.n_classes) + 1e-6 * _unit(returns.std(0))
        return _top_k(score, k, rng)


def _unit(x: np.ndarray) -> np.ndarray:
    return x / (np.abs(x).max() + 1e-12)


@dataclass(frozen=True)
class StratifiedSelector:
    """R4's rule: a third of the queries from the lowest-predicted 30% of episodes.

    Episodes are scored by the mean predicted return of their windows. From each chosen episode
    the segment is the highest-predicted window with probability ``best_window_p``, otherwise a
    random window. The rest of the queries come from the other episodes. If there are fewer
    episodes than queries, episodes give several (distinct) windows.
    """

    low_share: float = 1 / 3
    low_quantile: float = 0.3
    best_window_p: float = 0.5

    def select(self, candidates, k, returns_fn, rng) -> np.ndarray:
        _check_k(k, len(candidates))
        pred = _returns(candidates, returns_fn).mean(0)
        episodes = np.unique(candidates.episode_id)
        score = np.array([pred[candidates.episode_id == e].mean() for e in episodes])
        ranked = episodes[np.lexsort((rng.random(len(episodes)), score))]  # lowest first
        n_low_eps = max(1, math.ceil(self.low_quantile * len(episodes)))
        low, high = ranked[:n_low_eps], ranked[n_low_eps:]
        n_low = round(self.low_share * k) if len(high) else k
        taken = np.zeros(len(candidates), dtype=bool)
        chosen = self._from(low, n_low, candidates, pred, taken, rng)
        chosen += self._from(
            high if len(high) else low, k - len(chosen), candidates, pred, taken, rng
        )
        if len(chosen) < k:  # the strata ran out of windows: fill from anything left
            rest = np.flatnonzero(~taken)
            chosen += rng.choice(rest, k - len(chosen), replace=False).tolist()
        return np.asarray(chosen, dtype=np.int64)

    def _from(self, episodes, n, candidates, pred, taken, rng) -> list[int]:
        chosen: list[int] = []
        while len(chosen) < n:
            open_eps = [e for e in episodes if (~taken & (candidates.episode_id == e)).any()]
            if not open_eps:
                break
            order = rng.permutation(len(open_eps))
            for e in np.asarray(open_eps)[order][: n - len(chosen)]:
                windows = np.flatnonzero(~taken & (candidates.episode_id == e))
                if rng.random() < self.best_window_p:
                    pick = windows[np.argmax(pred[windows])]
                else:
                    pick = rng.choice(windows)
                taken[pick] = True
                chosen.append(int(pick))
        return chosen


SELECTORS = ("uniform", "disagreement", "entropy", "stratified")


def make_selector(name: str, n_classes: int = 2) -> QuerySelector:
    """The selector called ``name`` (for command lines and configs)."""
    if name == "uniform":
        return UniformSelector()
    if name == "disagreement":
        return DisagreementSelector()
    if name == "entropy":
        return EntropySelector(n_classes)
    if name == "stratified":
        return StratifiedSelector()
    raise FeedbackError(f"unknown query selector {name!r}; known: {list(SELECTORS)}")


# -- preference pairs ------------------------------------------------------------------------
def preference_entropy(returns_first: np.ndarray, returns_second: np.ndarray) -> np.ndarray:
    """Entropy of the ensemble-mean P(second > first) = mean_e sigmoid(R2 - R1), per pair."""
    z = np.clip(returns_second - returns_first, -50, 50)
    p = (1.0 / (1.0 + np.exp(-z))).mean(0)
    p = np.clip(p, 1e-12, 1 - 1e-12)
    return -(p * np.log(p) + (1 - p) * np.log(1 - p))


def select_pairs(
    candidates: SegmentSet,
    k: int,
    returns_fn: ReturnsFn,
    rng: np.random.Generator,
    by: str = "entropy",
    pool_factor: int = 10,
) -> np.ndarray:
    """``[k, 2]`` candidate indices to compare, chosen among ``pool_factor * k`` random pairs.

    ``by``: ``uniform``, ``disagreement`` (std over members of R2 - R1) or ``entropy``.
    """
    n = len(candidates)
    if n < 2:
        raise FeedbackError(f"pairs need at least 2 candidates, got {n}")
    m = max(k, pool_factor * k)
    first = rng.integers(0, n, m)
    second = (first + rng.integers(1, n, m)) % n  # never a segment against itself
    if by == "uniform":
        pick = rng.choice(m, k, replace=m < k)
    else:
        returns = _returns(candidates, returns_fn)
        r1, r2 = returns[:, first], returns[:, second]
        if by == "entropy":
            score = preference_entropy(r1, r2)
        elif by == "disagreement":
            score = (r2 - r1).std(0)
        else:
            raise FeedbackError(f"unknown pair selection {by!r}: uniform, disagreement, entropy")
        pick = _top_k(score, k, rng)
    return np.stack([first[pick], second[pick]], axis=1)


PAIR_SELECTORS = ("uniform", "disagreement", "entropy")


@dataclass(frozen=True)
class PairSelector:
    """:func:`select_pairs` behind the :class:`QuerySelector` interface: ``[k, 2]`` indices.

    The online loop hands whatever a selector returns to its source; a ``[k, 2]`` answer becomes
    ``k`` comparisons, so preference queries need no special case in the loop.
    """

    by: str = "entropy"
    pool_factor: int = 10

    def __post_init__(self) -> None:
        if self.by not in PAIR_SELECTORS:
            raise FeedbackError(f"unknown pair selection {self.by!r}; known: {PAIR_SELECTORS}")

    def select(self, candidates, k, returns_fn, rng) -> np.ndarray:
        return select_pairs(candidates, k, returns_fn, rng, self.by, self.pool_factor)
