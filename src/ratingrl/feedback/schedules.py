"""When an online run asks for feedback, and how much: pure arithmetic over env steps.

A :class:`Schedule` is the env step of every round of queries and how many queries each asks.
R4 spaces its rounds with growing gaps (1, 1, 2, 3, 3, 3, 4, ... units), RbRL with a fixed
interval; any list of steps works too. The schedule is checked against the run's length before
training starts, so a budget that cannot be collected fails in a second, not hours in.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = ["ScheduleError", "Schedule", "r4_gaps"]


class ScheduleError(ValueError):
    """A feedback budget or schedule that cannot be met in the run."""


def r4_gaps(n: int) -> list[int]:
    """R4's round gaps in units of 10k steps: 1, 1, 2, 3, 3, 3, 4, 4, 4, 5, 5, 5, ..."""
    gaps = [1, 1, 2]
    level = 3
    while len(gaps) < n:
        gaps += [level] * 3
        level += 1
    return gaps[:n]


@dataclass(frozen=True)
class Schedule:
    """Env step at which each round of queries happens, and how many queries it asks."""

    steps: tuple[int, ...]
    counts: tuple[int, ...]

    def __post_init__(self) -> None:
        if len(self.steps) != len(self.counts) or not self.steps:
            raise ScheduleError(f"a schedule needs one count per round, got {self}")
        if any(b <= a for a, b in zip(self.steps, self.steps[1:], strict=False)):
            raise ScheduleError(f"round steps must be strictly increasing, got {self.steps}")
        if self.steps[0] < 0 or min(self.counts) < 1:
            raise ScheduleError(f"round steps must be >= 0 and counts >= 1, got {self}")

    @property
    def budget(self) -> int:
        return sum(self.counts)

    @staticmethod
    def _counts(budget: int, per_round: int) -> tuple[int, ...]:
        if budget < 1 or per_round < 1:
            raise ScheduleError(f"budget and per-round queries must be >= 1: {budget}, {per_round}")
        n = math.ceil(budget / per_round)
        return tuple([per_round] * (n - 1) + [budget - per_round * (n - 1)])

    @classmethod
    def r4(cls, budget: int, per_round: int, unit: int = 10_000) -> Schedule:
        """R4: rounds after gaps of 1, 1, 2, 3, 3, 3, 4, ... x ``unit`` env steps."""
        counts = cls._counts(budget, per_round)
        steps = np.cumsum(r4_gaps(len(counts))) * unit
        return cls(tuple(int(s) for s in steps), counts)

    @classmethod
    def interval(cls, budget: int, per_round: int, every: int, first: int | None = None):
        """RbRL: a round every ``every`` env steps, the first at ``first`` (default ``every``)."""
        counts = cls._counts(budget, per_round)
        start = every if first is None else first
        return cls(tuple(start + i * every for i in range(len(counts))), counts)

    @classmethod
    def explicit(cls, steps: tuple[int, ...], budget: int) -> Schedule:
        """Rounds at the given steps sharing ``budget`` as evenly as possible."""
        if len(steps) < 1 or budget < len(steps):
            raise ScheduleError(f"{budget} labels cannot fill {len(steps)} rounds")
        base, extra = divmod(budget, len(steps))
        return cls(tuple(steps), tuple(base + (i < extra) for i in range(len(steps))))

    def share(self, budget: int) -> Schedule:
        """The same rounds asking ``budget`` queries in all, as evenly as possible.

        Earlier rounds get the remainder. A second kind of feedback (pairs beside ratings) uses
        this, so both kinds arrive together and every reward update sees both.
        """
        return Schedule.explicit(self.steps, budget)

    def check_fits(self, total_steps: int, not_before: int = 0) -> None:
        """Raise unless every round falls inside ``[not_before, total_steps)``."""
        if self.steps[-1] >= total_steps:
            raise ScheduleError(
                f"the feedback schedule needs {len(self.steps)} rounds for {self.budget} labels, "
                f"the last at env step {self.steps[-1]}, but the run has only {total_steps} "
                "steps: raise --steps, lower --budget, raise --per-round or shorten the gaps"
            )
        if self.steps[0] < not_before:
            raise ScheduleError(
                f"the first feedback round (step {self.steps[0]}) comes before the end of "
                f"entropy pre-training (step {not_before})"
            )

    def to_dict(self) -> dict:
        return {"steps": list(self.steps), "counts": list(self.counts)}
