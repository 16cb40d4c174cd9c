"""What a fidelity benchmark asks of its pool, checked before any run starts.

A pool is finite: ``ratings`` cannot exceed its training segments, ``classes`` its distinct
training returns, and the held-out part must hold something to rank. Each seed splits the pool
its own way (by episode, :func:`split_for_seed`, the split the runs use), so each is checked.
A request that fails is a :class:`RequestError` that names the field and the value, which the
command line and sweep files turn into a one-line error in their own terms.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from ratingrl.feedback.pool import split_by_episode
from ratingrl.feedback.segments import FeedbackError, SegmentSet
from ratingrl.feedback.teachers import Bins

if TYPE_CHECKING:
    from ratingrl.experiments.fidelity import FidelityConfig

__all__ = ["RequestError", "check_requests", "split_for_seed"]


class RequestError(ValueError):
    """A request the pool cannot serve: ``field`` of :class:`FidelityConfig` asked ``value``.

    Raised before any run starts; :meth:`message` phrases it in the caller's terms (a flag of
    ``ratingrl bench fidelity``, a key of a sweep file).
    """

    def __init__(self, field: str, value: object, reason: str) -> None:
        super().__init__(f"{field}={value}: {reason}")
        self.field, self.value, self.reason = field, value, reason

    def message(self, name: str, larger_pool: str) -> str:
        """``{name} {value}: {reason}, or {larger_pool} for a larger pool`` on one line."""
        return f"{name} {self.value}: {self.reason}, or {larger_pool} for a larger pool"


def check_requests(config: FidelityConfig, segments: SegmentSet, seeds: Sequence[int]) -> None:
    """Raise :class:`RequestError` for the first request of ``config`` that the pool
    ``segments`` cannot serve in every one of ``seeds``: a held-out part that cannot be
    scored, more ratings than training segments, or more classes than the training returns
    split into. The splits are the runs' own (:func:`split_for_seed`), so what passes here runs;
    the limit named is the smallest over the seeds, so asking for it passes."""
    env = config.env_id
    splits = {seed: split_for_seed(config, segments, seed) for seed in seeds}
    for seed, (_, test) in splits.items():
        if len(test) < 2 or np.ptp(segments.true_returns[test]) == 0:
            raise RequestError(
                "test_fraction",
                config.test_fraction,
                f"seed {seed} holds out {len(test)} segments of the pool of {env}, too few to "
                "rank (at least two with different returns)",
            )
    seed, (train, _) = min(splits.items(), key=lambda item: len(item[1][0]))
    rates = any(config.method(m).data_kind != "pairs" for m in config.methods)
    if rates and max(config.ratings) > len(train):
        raise RequestError(
            "ratings",
            max(config.ratings),
            f"the pool of {env} has {len(train)} training segments (seed {seed}); ask for at "
            f"most {len(train)}",
        )
    for k in sorted(config.classes, reverse=True):
        most = {s: _most_classes(segments.true_returns[tr], k) for s, (tr, _) in splits.items()}
        seed = min(most, key=most.__getitem__)
        if most[seed] < k:
            raise RequestError(
                "classes",
                k,
                f"the training returns of the pool of {env} split into at most {most[seed]} "
                f"distinct quantile classes (seed {seed}); ask for at most {most[seed]}",
            )


def _most_classes(returns: np.ndarray, asked: int) -> int:
    """The most classes up to ``asked`` whose quantile bins over ``returns`` are distinct."""
    for k in range(min(asked, len(returns)), 1, -1):
        try:
            Bins.quantile(k, returns)
            return k
        except FeedbackError:
            continue
    return 1


def split_for_seed(
    config: FidelityConfig, segments: SegmentSet, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Training and held-out segment indices of ``seed`` (held out: at most
    ``max_test_segments``, drawn from the held-out episodes' segments)."""
    rng = np.random.default_rng([seed, 0])
    try:
        train, test = split_by_episode(segments, config.test_fraction, rng)
    except FeedbackError as err:
        raise RequestError(
            "test_fraction", config.test_fraction, f"the pool of {config.env_id}: {err}"
        ) from None
    if len(test) > config.max_test_segments:
        test = np.sort(rng.choice(test, config.max_test_segments, replace=False))
    return train, test
