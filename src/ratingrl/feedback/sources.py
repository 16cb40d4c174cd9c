"""Where labels come from: the one interface the training loop talks to.

A :class:`FeedbackSource` is asked for labels (``request``) and later hands back whatever has
arrived (``collect``). A simulated teacher answers at once; people in the rating app answer when
they do. The online loop only ever sees this interface, so swapping a teacher for real raters
changes no training code. :class:`RatingSource` asks for ratings of segments,
:class:`~ratingrl.feedback.preference_source.PreferenceSource` for comparisons of pairs.

Optional capabilities are explicit attributes and methods with safe defaults, so a source says
what it can do instead of the loop probing for it:

- ``wants_states`` (default False): queries should carry simulator states where the environment
  has them. The rating app sets it, to show people the real robot; a simulated teacher does not,
  and then the training loop does not pay for recording them.
- :meth:`FeedbackSource.retracted` (default: nothing): labels withdrawn since the last call, by
  ``RatedSegments.label_id``. A person who undoes a rating in the app withdraws a label the
  loop may already have collected; a teacher never changes its mind.
- :meth:`RatingSource.remapper` (default None): how ratings on an earlier, finer scale map onto
  the source's current scale, for sources whose scale coarsens mid-run (R4's response shift).
- :meth:`FeedbackSource.state_dict` / :meth:`FeedbackSource.load_state_dict` (default: no
  state): what a resumed run needs to continue the source where it stopped, e.g. a teacher's
  random stream.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from ratingrl.feedback.segments import FeedbackError, RatedSegments, RatingScale, SegmentSet
from ratingrl.feedback.teachers import DynamicRatingTeacher, RatingTeacher

__all__ = ["FeedbackSource", "RatingSource", "TeacherSource", "RemapFn", "generator_state"]

RemapFn = Callable[[np.ndarray], np.ndarray]
"""Ratings on a finer scale -> the same ratings on the source's new, coarser scale."""


class FeedbackSource(ABC):
    """Anything that answers queries, now or later (subclass it; see the module docstring).

    ``kind`` names what the source hands back: ``"ratings"`` or ``"pairs"``.
    """

    kind: ClassVar[str]
    wants_states: bool = False

    @abstractmethod
    def request(self, queries: Any) -> None:
        """Queue ``queries`` (segments to rate, or pairs to compare)."""

    @abstractmethod
    def collect(self, timeout: float = 0.0) -> Any | None:
        """Labels that arrived since the last call (waiting up to ``timeout`` s), or None."""

    def retracted(self) -> Collection[str]:
        """``label_id`` of labels withdrawn since the last call, each reported once.

        May name labels never handed out by :meth:`collect` (withdrawn before they were
        collected); the loop ignores those. The default withdraws nothing.
        """
        return ()

    def state_dict(self) -> dict:
        """What a resumed run needs to continue this source (picklable); default none."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        """Continue from a :meth:`state_dict`; ``{}`` (a source that saved nothing) is a no-op."""
        del state

    def resumed(self, labels_held: int) -> None:
        """Told on resume how many of its labels the run holds, which may be more than its
        saved state knows of (labels are stored the moment they arrive, checkpoints later)."""
        del labels_held


class RatingSource(FeedbackSource):
    """A source of ratings: ``request(SegmentSet)``, ``collect() -> RatedSegments | None``."""

    kind: ClassVar[str] = "ratings"

    @property
    @abstractmethod
    def scale(self) -> RatingScale:
        """The scale ratings are given on (it may change, e.g. with dynamic classes)."""

    @abstractmethod
    def request(self, queries: SegmentSet) -> None:
        """Queue segments for rating."""

    @abstractmethod
    def collect(self, timeout: float = 0.0) -> RatedSegments | None:
        """Ratings that arrived since the last call (waiting up to ``timeout`` s), or None."""

    def remapper(self) -> RemapFn | None:
        """Maps ratings of an earlier, finer scale onto the current one; None if the scale
        never changes (the default)."""
        return None


def generator_state(rng: np.random.Generator) -> dict:
    """A copy of ``rng``'s position in its stream, for a source's :meth:`state_dict`."""
    return dict(rng.bit_generator.state)


@dataclass
class TeacherSource(RatingSource):
    """A simulated teacher behind the :class:`RatingSource` interface (answers immediately)."""

    teacher: RatingTeacher | DynamicRatingTeacher
    rng: np.random.Generator = field(default_factory=lambda: np.random.default_rng(0))
    _pending: list[SegmentSet] = field(default_factory=list, init=False, repr=False)

    @property
    def scale(self) -> RatingScale:
        return self.teacher.scale

    def request(self, queries: SegmentSet) -> None:
        if len(queries) == 0:
            raise FeedbackError("request() needs at least one segment")
        if queries.true_rewards is None:
            raise FeedbackError("a simulated teacher needs segments with true_rewards")
        self._pending.append(queries)

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

    def remapper(self) -> RemapFn | None:
        return self.teacher.remap if isinstance(self.teacher, DynamicRatingTeacher) else None

    def state_dict(self) -> dict:
        state: dict = {"rng": generator_state(self.rng)}
        if isinstance(self.teacher, DynamicRatingTeacher):
            state["rated"] = self.teacher.rated
        return state

    def load_state_dict(self, state: dict) -> None:
        if state.get("rng") is not None:
            self.rng.bit_generator.state = state["rng"]
        if isinstance(self.teacher, DynamicRatingTeacher):
            self.teacher.rated = max(self.teacher.rated, int(state.get("rated", 0)))

    def resumed(self, labels_held: int) -> None:
        # every stored label came from this teacher: it has rated at least that many
        if isinstance(self.teacher, DynamicRatingTeacher):
            self.teacher.rated = max(self.teacher.rated, labels_held)
