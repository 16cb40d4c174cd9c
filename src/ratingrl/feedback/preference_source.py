"""Where preference labels come from: :class:`FeedbackSource`'s request/collect, for pairs.

The online loop asks for labels the same way whatever the feedback is: ``request`` a query,
``collect`` what has arrived. For ratings the query is a :class:`SegmentSet`; for preferences it
is a :class:`SegmentPairs` (the two segments of each comparison). A simulated B-Pref teacher
answers at once; a web page of people comparing clips could answer later through the same two
calls. Skipped queries (B-Pref's "skip" teacher) are simply not returned, like a rater who never
answers.
"""

from __future__ import annotations

import time
from abc import abstractmethod
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from ratingrl.feedback.segments import FeedbackError, PreferencePairs, SegmentSet
from ratingrl.feedback.sources import FeedbackSource, generator_state
from ratingrl.feedback.teachers import PreferenceTeacher

__all__ = ["SegmentPairs", "PreferenceSource", "PreferenceTeacherSource"]


@dataclass(frozen=True)
class SegmentPairs:
    """Unlabelled comparisons: ``first[i]`` against ``second[i]``."""

    first: SegmentSet
    second: SegmentSet

    def __post_init__(self) -> None:
        self.first.check_compatible(self.second, "second segments")
        if len(self.first) != len(self.second):
            raise FeedbackError(f"{len(self.first)} first vs {len(self.second)} second segments")

    def __len__(self) -> int:
        return len(self.first)


class PreferenceSource(FeedbackSource):
    """A source of comparisons: ``request(SegmentPairs)``, ``collect() -> PreferencePairs``."""

    kind: ClassVar[str] = "pairs"

    @abstractmethod
    def request(self, queries: SegmentPairs) -> None:
        """Queue pairs for comparison."""

    @abstractmethod
    def collect(self, timeout: float = 0.0) -> PreferencePairs | None:
        """Labels that arrived since the last call (waiting up to ``timeout`` s), or None."""


@dataclass
class PreferenceTeacherSource(PreferenceSource):
    """A simulated :class:`PreferenceTeacher` behind the request/collect interface."""

    teacher: PreferenceTeacher
    rng: np.random.Generator = field(default_factory=lambda: np.random.default_rng(0))
    skipped: int = 0
    _pending: list[SegmentPairs] = field(default_factory=list, init=False, repr=False)

    def request(self, queries: SegmentPairs) -> None:
        if len(queries) == 0:
            raise FeedbackError("request() needs at least one pair")
        if queries.first.true_rewards is None or queries.second.true_rewards is None:
            raise FeedbackError("a simulated teacher needs segments with true_rewards")
        self._pending.append(queries)

    def collect(self, timeout: float = 0.0) -> PreferencePairs | None:
        del timeout  # a teacher never keeps anyone waiting
        if not self._pending:
            return None
        started = time.time()
        batches, self._pending = self._pending, []
        first = SegmentSet.concat([b.first for b in batches])
        second = SegmentSet.concat([b.second for b in batches])
        labels, answered = self.teacher.label(first, second, self.rng)
        self.skipped += int((~answered).sum())
        if not answered.any():
            return None
        keep = np.flatnonzero(answered)
        source = {**self.teacher.to_dict(), "rated_at": started}
        return PreferencePairs(first.subset(keep), second.subset(keep), labels[keep], source)

    def state_dict(self) -> dict:
        return {"rng": generator_state(self.rng), "skipped": self.skipped}

    def load_state_dict(self, state: dict) -> None:
        if state.get("rng") is not None:
            self.rng.bit_generator.state = state["rng"]
        self.skipped = int(state.get("skipped", self.skipped))
