"""A run's labels on disk, and the channels they arrive through.

:class:`FeedbackStore` holds every label an online run has collected, written to Parquet the
moment it arrives (before anything is trained on it, so no label is lost to a crash). A
:class:`FeedbackChannel` is one kind of feedback in a run: who answers (a
:class:`~ratingrl.feedback.sources.FeedbackSource`), how queries are picked (a query selector),
where the labels go (a store) and how many are asked per round. A run mixing ratings and
preference pairs has two channels; the online loop talks to each the same way.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from ratingrl.feedback.io import (
    load_preferences,
    load_rated,
    read_metadata,
    save_preferences,
    save_rated,
)
from ratingrl.feedback.queries import QuerySelector, StratifiedSelector
from ratingrl.feedback.segments import FeedbackError, PreferencePairs, RatedSegments
from ratingrl.feedback.sources import FeedbackSource, RemapFn

__all__ = ["Labels", "FeedbackStore", "FeedbackChannel", "learnable"]

Labels = RatedSegments | PreferencePairs
"""What a source hands back: ratings or preference labels; the loop treats both alike."""


def learnable(data: Labels | None) -> bool:
    """Whether labels can teach a reward: ratings need two classes (one class says nothing
    about order), pairs need two pairs."""
    if data is None:
        return False
    if isinstance(data, PreferencePairs):
        return len(data) >= 2
    return len(np.unique(data.ratings)) >= 2


def _rescale(stored: RatedSegments, new: RatedSegments, remap: RemapFn | None):
    """Put ``stored`` and ``new`` on one scale: the coarser one, via ``remap``.

    A rating source may coarsen its scale mid-run (R4's response shift). Stored fine ratings are
    then mapped onto the coarse scale, so every label keeps being used; without a remap there is
    no sound mapping and the run stops with an error rather than mixing scales.
    """
    if stored.scale == new.scale:
        return stored, new
    if remap is None:
        raise FeedbackError(
            f"the rating scale changed from {stored.scale.n} to {new.scale.n} classes and the "
            "source has no remapper() to carry stored ratings over"
        )
    fine, coarse = (stored, new) if stored.scale.n > new.scale.n else (new, stored)
    mapped = np.asarray(remap(fine.ratings), dtype=np.int64)
    source = {**fine.source, "remapped_from_classes": fine.scale.n}
    fine = replace(fine, ratings=mapped, scale=coarse.scale, source=source)
    return (fine, coarse) if fine.segments is stored.segments else (coarse, fine)


@dataclass
class FeedbackStore:
    """Every label collected in a run, on disk after each arrival (one atomic Parquet write).

    Labels are ratings or preference pairs (one kind per store: a run mixing both has two).
    ``rounds_done`` travels in the file's metadata, so a resumed run neither repeats a round nor
    forgets one. ``remap`` carries stored ratings over when the source's rating scale changes.
    ``retracted`` counts labels removed because their source withdrew them (:meth:`retract`);
    it travels in the metadata too (``labels_retracted``), so a resumed run knows its reward
    may still have learned from one.
    """

    path: Path
    data: Labels | None = None
    rounds_done: int = 0
    meta: dict = field(default_factory=dict)
    remap: RemapFn | None = None
    remapped: int = 0
    retracted: int = 0

    def __len__(self) -> int:
        return 0 if self.data is None else len(self.data)

    def add(self, labels: Labels) -> None:
        """Append ``labels`` (remapping stored ratings if the scale coarsened) and save."""
        if isinstance(labels, PreferencePairs):
            if isinstance(self.data, RatedSegments):
                raise FeedbackError("preference labels cannot join a store of ratings")
            self.data = labels if self.data is None else PreferencePairs.concat([self.data, labels])
        else:
            if isinstance(self.data, PreferencePairs):
                raise FeedbackError("ratings cannot join a store of preference labels")
            if self.data is not None and self.data.scale != labels.scale:
                before = self.data.scale.n
                self.data, labels = _rescale(self.data, labels, self.remap)
                if self.data.scale.n != before:
                    self.remapped += len(self.data)
            self.data = labels if self.data is None else RatedSegments.concat([self.data, labels])
        self.save()

    def retract(self, ids: Collection[str]) -> int:
        """Remove the labels whose ``label_id`` is in ``ids`` and rewrite the file; returns how
        many were removed.

        Ids the store does not hold (withdrawn before they were collected, or another run's)
        are ignored, and so are labels without ids (a simulated teacher's).
        """
        if self.data is None or not ids:
            return 0
        kept = self.data.without_ids({str(i) for i in ids})
        removed = len(self.data) - len(kept)
        if removed:
            self.data = kept
            self.retracted += removed
            self.save()
        return removed

    def save(self) -> None:
        if self.data is None:
            return
        source = {
            **self.data.source,
            **self.meta,
            "rounds_done": self.rounds_done,
            "labels_retracted": self.retracted,
        }
        if isinstance(self.data, PreferencePairs):
            save_preferences(replace(self.data, source=source), self.path)
        else:
            save_rated(replace(self.data, source=source), self.path)

    @classmethod
    def load(
        cls, path: Path, meta: dict | None = None, remap: RemapFn | None = None
    ) -> FeedbackStore:
        """The store at ``path`` (empty if the file does not exist yet)."""
        if not Path(path).exists():
            return cls(Path(path), meta=dict(meta or {}), remap=remap)
        kind = read_metadata(path).get("kind")  # a clear error for a foreign or corrupt file
        data = load_preferences(path) if kind == "preferences" else load_rated(path)
        rounds = int(data.source.get("rounds_done", 0))
        retracted = int(data.source.get("labels_retracted", 0))
        return cls(Path(path), data, rounds, dict(meta or {}), remap, retracted=retracted)


@dataclass
class FeedbackChannel:
    """One kind of feedback in a run: who answers, how queries are picked, where labels go.

    ``counts[i]`` is how many queries the channel asks in round ``i`` of the run's schedule
    (a :meth:`~ratingrl.feedback.schedules.Schedule.share` of its budget, or the schedule's own
    counts). Mixing kinds of feedback is then a list of channels: the loop talks to each
    through the same request/collect interface and never asks which kind it is. ``name``
    labels its log columns.
    """

    source: FeedbackSource
    selector: QuerySelector
    store: FeedbackStore
    counts: tuple[int, ...]
    name: str = "labels"

    def __post_init__(self) -> None:
        if not isinstance(self.source, FeedbackSource):
            raise FeedbackError(
                f"channel {self.name!r}: the source must subclass "
                f"ratingrl.feedback.sources.FeedbackSource, got {type(self.source).__name__}"
            )

    def due(self, steps: tuple[int, ...], num_timesteps: int) -> bool:
        """Whether the channel's next round has come (each store keeps its own round count)."""
        done = self.store.rounds_done
        return done < len(steps) and num_timesteps >= steps[done]

    def episode_based(self) -> bool:
        """R4's stratified rule picks from every window; the others score a random subset."""
        return isinstance(self.selector, StratifiedSelector)

    def learnable(self) -> Labels | None:
        """Every stored label if they can teach a reward yet, else None."""
        data = self.store.data
        return data if learnable(data) else None
