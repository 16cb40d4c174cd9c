"""Aggregate statistics of runs across seeds and tasks, with intervals that say how sure we are.

Agarwal et al. (NeurIPS 2021, the ``rliable`` library) showed that a handful of seeds per task
makes point estimates misleading, and recommend: the interquartile mean (IQM: the mean of the
middle 50% of all runs, pooled over tasks) instead of the mean or median; 95% intervals from a
*stratified* bootstrap (runs are resampled within each task, so every task keeps its weight);
the probability of improvement P(X > Y) between two methods; and performance profiles (the
fraction of runs above each score threshold).

The point estimates are ``rliable.metrics``' own functions. The bootstrap is written here,
vectorised, for two reasons: ``rliable.library`` draws its resamples from NumPy's global random
state whatever ``random_state`` it is given (reproducible only by seeding global state), and it
imports ``arch``, whose releases that rliable accepts (< 8) fail to import next to pandas 3.
Every function takes a ``seed``: the same store gives the same intervals, digit for digit.

Scores are given per task as ``{task: runs}`` and tasks may have different numbers of runs
(a seed that failed on one task). Percentile intervals, as rliable's default.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

__all__ = [
    "Interval",
    "CurveBand",
    "iqm",
    "iqm_interval",
    "mean_interval",
    "probability_of_improvement",
    "performance_profile",
    "curve_band",
    "REPS",
]

REPS = 10_000
"""Bootstrap resamples per estimate (rliable uses 50,000 for intervals, 2,000 for profiles)."""

Scores = Mapping[str, Sequence[float]]


@dataclass(frozen=True)
class Interval:
    """A point estimate with its 95% interval, and how many runs and tasks it rests on."""

    point: float
    low: float
    high: float
    runs: int
    tasks: int

    def text(self, digits: int = 2) -> str:
        """``0.93 [0.85, 0.99]``, the way tables show it."""
        if not np.isfinite(self.point):
            return "-"
        return f"{self.point:.{digits}f} [{self.low:.{digits}f}, {self.high:.{digits}f}]"

    def to_dict(self) -> dict:
        """The fields as a dict (``report.json``, the claims table)."""
        return {k: getattr(self, k) for k in ("point", "low", "high", "runs", "tasks")}


@dataclass(frozen=True)
class CurveBand:
    """A learning curve over seeds: the mean and its 95% interval at each evaluation step."""

    steps: np.ndarray
    mean: np.ndarray
    low: np.ndarray
    high: np.ndarray
    runs: np.ndarray  # seeds that reached each step


def iqm(scores: Sequence[float] | np.ndarray) -> float:
    """Interquartile mean of all scores (rliable's ``aggregate_iqm``: 25% trimmed each side)."""
    from rliable import metrics

    return float(metrics.aggregate_iqm(np.asarray(scores, dtype=float).ravel()))


def iqm_interval(scores: Scores, *, reps: int = REPS, seed: int = 0) -> Interval:
    """IQM of every run of every task, with a stratified-bootstrap 95% interval."""
    return _interval(scores, _trimmed_mean, iqm, reps, seed)


def mean_interval(scores: Scores, *, reps: int = REPS, seed: int = 0) -> Interval:
    """The mean over tasks of each task's mean, with a stratified-bootstrap 95% interval
    (for quantities where outliers are the point, such as speed ratios)."""

    def mean(samples: list[np.ndarray]) -> np.ndarray:
        return np.mean([s.mean(axis=-1) for s in samples], axis=0)

    return _interval(scores, mean, lambda x: float(mean(_split(x, scores))), reps, seed)


def probability_of_improvement(
    x: Scores, y: Scores, *, reps: int = REPS, seed: int = 0
) -> Interval:
    """P(a run of X scores above a run of Y on the same task), averaged over the tasks both
    have (ties count one half: the Mann-Whitney U statistic over n_x n_y, as rliable), with
    X's and Y's runs resampled independently within each task."""
    from rliable import metrics

    tasks = [t for t in x if t in y and len(x[t]) and len(y[t])]
    if not tasks:
        return _empty()
    point = float(
        np.mean(
            [
                metrics.probability_of_improvement(_column(x[t]), _column(y[t]))
                for t in tasks
            ]
        )
    )
    rng = np.random.default_rng(seed)
    per_task = []
    for task in tasks:
        a, b = _resample(np.asarray(x[task], float), reps, rng), _resample(
            np.asarray(y[task], float), reps, rng
        )
        above = (a[:, :, None] > b[:, None, :]).mean(axis=(1, 2))
        ties = (a[:, :, None] == b[:, None, :]).mean(axis=(1, 2))
        per_task.append(above + 0.5 * ties)
    low, high = np.percentile(np.mean(per_task, axis=0), [2.5, 97.5])
    runs = sum(len(x[t]) + len(y[t]) for t in tasks)
    return Interval(point, float(low), float(high), runs, len(tasks))


def performance_profile(
    scores: Scores, taus: Sequence[float], *, reps: int = REPS, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each threshold tau, the fraction of runs scoring above it (each task weighted
    equally), with stratified-bootstrap 95% intervals: ``(profile, low, high)``."""
    taus = np.asarray(taus, dtype=float)
    tasks = [np.asarray(v, float) for v in scores.values() if len(v)]
    if not tasks:
        nan = np.full(len(taus), np.nan)
        return nan, nan, nan
    point = np.mean([(t[:, None] > taus).mean(axis=0) for t in tasks], axis=0)
    rng = np.random.default_rng(seed)
    boot = np.mean(
        [(_resample(t, reps, rng)[:, :, None] > taus).mean(axis=1) for t in tasks], axis=0
    )
    low, high = np.percentile(boot, [2.5, 97.5], axis=0)
    return point, low, high


def curve_band(
    curves: Sequence[tuple[Sequence[float], Sequence[float]]],
    *,
    reps: int = REPS,
    seed: int = 0,
) -> CurveBand:
    """Mean learning curve of several seeds ``[(steps, values), ...]`` with a bootstrap 95%
    interval of the mean at each step; a step only some seeds reached uses those seeds."""
    by_step: dict[int, list[float]] = {}
    for steps, values in curves:
        for step, value in zip(steps, values, strict=True):
            if np.isfinite(value):
                by_step.setdefault(int(step), []).append(float(value))
    steps = np.array(sorted(by_step), dtype=np.int64)
    rng = np.random.default_rng(seed)
    mean, low, high, runs = [], [], [], []
    for step in steps:
        values = np.asarray(by_step[int(step)])
        boot = _resample(values, reps, rng).mean(axis=1)
        lo, hi = np.percentile(boot, [2.5, 97.5])
        mean.append(values.mean())
        low.append(lo)
        high.append(hi)
        runs.append(len(values))
    return CurveBand(steps, np.array(mean), np.array(low), np.array(high), np.array(runs))


# -- the stratified bootstrap ----------------------------------------------------------------
def _resample(values: np.ndarray, reps: int, rng: np.random.Generator) -> np.ndarray:
    """``reps`` resamples (with replacement) of one task's runs: shape ``(reps, runs)``."""
    return values[rng.integers(0, len(values), size=(reps, len(values)))]


def _interval(
    scores: Scores,
    statistic: Callable[[list[np.ndarray]], np.ndarray],
    point_fn: Callable[[np.ndarray], float],
    reps: int,
    seed: int,
) -> Interval:
    """Point estimate on every run pooled; interval from resampling runs within each task."""
    tasks = [np.asarray(v, float) for v in scores.values() if len(v)]
    if not tasks:
        return _empty()
    rng = np.random.default_rng(seed)
    boot = statistic([_resample(t, reps, rng) for t in tasks])
    low, high = np.percentile(boot, [2.5, 97.5])
    pooled = np.concatenate(tasks)
    return Interval(point_fn(pooled), float(low), float(high), len(pooled), len(tasks))


def _trimmed_mean(samples: list[np.ndarray]) -> np.ndarray:
    """IQM of each resample (row) of the pooled tasks: scipy's trim_mean, as rliable's IQM."""
    from scipy.stats import trim_mean

    return trim_mean(np.concatenate(samples, axis=1), 0.25, axis=1)


def _split(pooled: np.ndarray, scores: Scores) -> list[np.ndarray]:
    sizes = [len(v) for v in scores.values() if len(v)]
    return np.split(pooled, np.cumsum(sizes)[:-1])


def _column(values: Sequence[float]) -> np.ndarray:
    return np.asarray(values, dtype=float).reshape(-1, 1)


def _empty() -> Interval:
    return Interval(float("nan"), float("nan"), float("nan"), 0, 0)
