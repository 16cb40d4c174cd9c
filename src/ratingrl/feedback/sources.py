"""Where ratings come from: the one interface the training loop talks to.

A :class:`RatingSource` is asked to rate some segments (``request``) and later hands back
whatever ratings have arrived (``collect``). A simulated teacher answers at once; the rating app
answers when people do. The online loop only ever sees this protocol, so swapping a teacher for
real raters changes no training code.

A source may also say it wants simulator states with its queries (an optional ``wants_states``
attribute, read with :func:`wants_states`): the rating app does, to show people the real robot;
a simulated teacher does not, and then the training loop does not pay for recording them.

A source may also take labels back (an optional ``retracted()`` method, read with
:func:`retracted`): a person who undoes a rating in the app withdraws a label the loop may
already have collected. Labels are named by ``RatedSegments.label_id``. A teacher never changes
its mind and need not implement it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np

from ratingrl.feedback.segments import FeedbackError, RatedSegments, RatingScale, SegmentSet
from ratingrl.feedback.teachers import DynamicRatingTeacher, RatingTeacher

__all__ = ["RatingSource", "TeacherSource", "retracted", "wants_states"]


@runtime_checkable
class RatingSource(Protocol):
    """Anything that can rate segments, now or later.

    Optional, and so not part of the protocol's checked members: ``wants_states: bool`` -- True
    asks the training loop to send queries with simulator states (``SegmentSet.states``) where
    the environment has them. Absent means False; see :func:`wants_states`.

    Optional too: ``retracted() -> Iterable[str]`` -- the ``label_id`` of labels withdrawn since
    the last call (each reported once). It may name labels that were never handed out by
    ``collect`` (withdrawn before they were collected); the loop ignores those. Absent means
    nothing is ever withdrawn; see :func:`retracted`.
    """

    @property
    def scale(self) -> RatingScale:
        """The scale ratings are given on (it may change, e.g. with dynamic classes)."""
        ...

    def request(self, segments: SegmentSet) -> None:
        """Queue ``segments`` for rating."""
        ...

    def collect(self, timeout: float = 0.0) -> RatedSegments | None:
        """Ratings that arrived since the last call (waiting up to ``timeout`` s), or None."""
        ...


def wants_states(source: object) -> bool:
    """Whether ``source`` wants simulator states with its queries (``wants_states``, default
    False): optional, so sources written before it, or that never show clips, need not say."""
    return bool(getattr(source, "wants_states", False))


def retracted(source: object) -> frozenset[str]:
    """Label ids ``source`` withdrew since it was last asked (its optional ``retracted()``).

    Optional, so simulated teachers and sources written before it need not implement it: they
    retract nothing. Ids are strings, as in ``RatedSegments.label_id``.
    """
    method = getattr(source, "retracted", None)
    if not callable(method):
        return frozenset()
    return frozenset(str(label) for label in method())


@dataclass
class TeacherSource:
    """A simulated teacher behind the :class:`RatingSource` interface (answers immediately)."""

    teacher: RatingTeacher | DynamicRatingTeacher
    rng: np.random.Generator = field(default_factory=lambda: np.random.default_rng(0))
    _pending: list[SegmentSet] = field(default_factory=list, init=False, repr=False)

    @property
    def scale(self) -> RatingScale:
        return self.teacher.scale

    def request(self, segments: SegmentSet) -> None:
        if len(segments) == 0:
            raise FeedbackError("request() needs at least one segment")
        if segments.true_rewards is None:
            raise FeedbackError("a simulated teacher needs segments with true_rewards")
        self._pending.append(segments)

    def collect(self, timeout: float = 0.0) -> RatedSegments | None:
        del timeout  # a teacher never keeps anyone waiting
        if not self._pending:
            return None
        started = time.time()
        batches, self._pending = self._pending, []
        segments = SegmentSet.concat(batches)
        scale = self.teacher.scale  # the scale in force when these were rated
        ratings = self.teacher.rate(segments, self.rng)
        source = {**self.teacher.to_dict(), "rated_at": started}
        return RatedSegments(segments, ratings, scale, source)
