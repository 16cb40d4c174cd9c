"""Segments of behaviour and the labels people (or teachers) give them.

A *segment* is H consecutive steps of one episode: observations, actions and, when the data is
simulated, the environment's own rewards (used only by simulated teachers and for evaluation).
Segments are stored in arrays (``SegmentSet``) because every consumer -- teachers, reward nets,
metrics -- works on whole batches; a single ``Segment`` is a validated view for users and tests.

Everything is validated on construction so a bad array fails where it was made, with the field
and the offending value in the message, instead of as a shape error deep inside training.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field

import numpy as np

from ratingrl.feedback.columns import (
    as_float_array,
    concat_optional,
    label_ids,
    rater_column,
    rows_without_ids,
)
from ratingrl.feedback.errors import FeedbackError

__all__ = [
    "FeedbackError",
    "RatingScale",
    "Segment",
    "SegmentSet",
    "RatedSegments",
    "PreferencePairs",
]


@dataclass(frozen=True)
class RatingScale:
    """An ordinal rating scale: ``n`` levels, 0 = worst, each with a name shown to raters."""

    n: int
    names: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if int(self.n) < 2:
            raise FeedbackError(f"RatingScale.n must be at least 2, got {self.n!r}")
        names = tuple(self.names) or tuple(str(i) for i in range(self.n))
        if len(names) != self.n:
            raise FeedbackError(
                f"RatingScale.names must have n={self.n} entries, got {len(names)}: {names!r}"
            )
        object.__setattr__(self, "n", int(self.n))
        object.__setattr__(self, "names", names)

    def validate(self, ratings: np.ndarray, field_name: str = "ratings") -> np.ndarray:
        """Return ``ratings`` as int64, or raise naming the first value outside 0..n-1."""
        try:  # a Python int beyond int64 (2**64, -10**100) cannot even be converted
            ratings = np.asarray(ratings)
            if ratings.dtype.kind == "u" and ratings.size and ratings.max() >= 2**63:
                raise OverflowError  # uint64 would wrap round to a negative int64
            if ratings.size and not np.issubdtype(ratings.dtype, np.integer):
                with np.errstate(invalid="ignore"):  # NaN and infinities are not whole numbers
                    as_int = ratings.astype(np.int64)
                if not np.array_equal(as_int, ratings):
                    bad = ratings[as_int != ratings][0]
                    raise FeedbackError(f"{field_name} must be whole numbers, got {float(bad)}")
                ratings = as_int
            ratings = ratings.astype(np.int64)
        except OverflowError:
            raise FeedbackError(
                f"{field_name} holds a number far outside the scale 0..{self.n - 1}"
            ) from None
        outside = (ratings < 0) | (ratings >= self.n)
        if outside.any():
            i = int(np.argmax(outside))
            raise FeedbackError(
                f"{field_name}[{i}] = {int(ratings[i])} is outside the scale 0..{self.n - 1}"
            )
        return ratings

    def to_dict(self) -> dict:
        return {"n": self.n, "names": list(self.names)}

    @classmethod
    def from_dict(cls, data: dict) -> RatingScale:
        return cls(int(data["n"]), tuple(data.get("names", ())))


@dataclass(frozen=True)
class Segment:
    """One clip: observations ``[H, obs_dim]``, actions ``[H, act_dim]``, optional true rewards."""

    obs: np.ndarray
    acts: np.ndarray
    true_rewards: np.ndarray | None = None
    episode_id: int = -1
    start: int = 0

    def __post_init__(self) -> None:
        obs = as_float_array("obs", self.obs, 2)
        acts = as_float_array("acts", self.acts, 2)
        if len(obs) != len(acts):
            raise FeedbackError(
                f"obs has {len(obs)} steps but acts has {len(acts)}: a segment's arrays must match"
            )
        if len(obs) == 0:
            raise FeedbackError("a segment needs at least one step, got obs of length 0")
        object.__setattr__(self, "obs", obs)
        object.__setattr__(self, "acts", acts)
        if self.true_rewards is not None:
            rewards = as_float_array("true_rewards", self.true_rewards, 1)
            if len(rewards) != len(obs):
                raise FeedbackError(f"true_rewards has {len(rewards)} steps but obs has {len(obs)}")
            object.__setattr__(self, "true_rewards", rewards)

    @property
    def horizon(self) -> int:
        return len(self.obs)

    @property
    def true_return(self) -> float:
        if self.true_rewards is None:
            raise FeedbackError("this segment has no true_rewards")
        return float(self.true_rewards.sum())


@dataclass(frozen=True)
class SegmentSet:
    """N segments of equal horizon, as arrays: obs ``[N, H, obs_dim]``, acts ``[N, H, act_dim]``.

    ``true_rewards`` (``[N, H]``) is optional: ratings from people come without it.
    ``episode_id`` and ``start`` record where each segment came from, so held-out splits can be
    made by episode and nothing overlaps between training and evaluation.
    ``states`` (``[N, H, state_dim]``, float64) is optional: the simulator state in which each
    observation was made (qpos+qvel, or dm_control's ``physics.get_state()``). Observations do
    not always determine it (DeepMind Control), and the rating app needs it to show the robot;
    float64 because float32 rounding of a state visibly changes a replayed pose.
    """

    obs: np.ndarray
    acts: np.ndarray
    true_rewards: np.ndarray | None = None
    episode_id: np.ndarray | None = None
    start: np.ndarray | None = None
    info: dict = field(default_factory=dict, compare=False)
    states: np.ndarray | None = None

    def __post_init__(self) -> None:
        obs = as_float_array("obs", self.obs, 3)
        acts = as_float_array("acts", self.acts, 3)
        if obs.shape[:2] != acts.shape[:2]:
            raise FeedbackError(
                f"obs has shape {obs.shape} and acts {acts.shape}: segment count and length "
                "(the first two dimensions) must match"
            )
        if obs.shape[1] == 0:
            raise FeedbackError("segments need at least one step, got horizon 0")
        n = len(obs)
        object.__setattr__(self, "obs", obs)
        object.__setattr__(self, "acts", acts)
        if self.true_rewards is not None:
            rewards = as_float_array("true_rewards", self.true_rewards, 2)
            if rewards.shape != obs.shape[:2]:
                raise FeedbackError(
                    f"true_rewards has shape {rewards.shape}, expected {obs.shape[:2]}"
                )
            object.__setattr__(self, "true_rewards", rewards)
        if self.states is not None:
            states = as_float_array("states", self.states, 3, np.float64)
            if states.shape[:2] != obs.shape[:2]:
                raise FeedbackError(
                    f"states has shape {states.shape}, expected {obs.shape[:2]} + (state_dim,)"
                )
            object.__setattr__(self, "states", states)
        for name in ("episode_id", "start"):
            value = getattr(self, name)
            value = np.full(n, -1 if name == "episode_id" else 0) if value is None else value
            value = np.asarray(value, dtype=np.int64)
            if value.shape != (n,):
                raise FeedbackError(f"{name} has shape {value.shape}, expected ({n},)")
            object.__setattr__(self, name, value)

    # -- shape -------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.obs)

    @property
    def horizon(self) -> int:
        return self.obs.shape[1]

    @property
    def obs_dim(self) -> int:
        return self.obs.shape[2]

    @property
    def act_dim(self) -> int:
        return self.acts.shape[2]

    @property
    def true_returns(self) -> np.ndarray:
        """Undiscounted return of each segment under the environment's reward."""
        if self.true_rewards is None:
            raise FeedbackError("these segments have no true_rewards (rated by people?)")
        return self.true_rewards.sum(axis=1)

    # -- selection ---------------------------------------------------------------------------
    def __getitem__(self, index: int) -> Segment:
        return Segment(
            self.obs[index],
            self.acts[index],
            None if self.true_rewards is None else self.true_rewards[index],
            int(self.episode_id[index]),
            int(self.start[index]),
        )

    def subset(self, indices: Sequence[int] | np.ndarray) -> SegmentSet:
        """The segments at ``indices`` (a new set; arrays are copied by fancy indexing)."""
        idx = np.asarray(indices, dtype=np.int64)
        return SegmentSet(
            self.obs[idx],
            self.acts[idx],
            None if self.true_rewards is None else self.true_rewards[idx],
            self.episode_id[idx],
            self.start[idx],
            dict(self.info),
            None if self.states is None else self.states[idx],
        )

    @property
    def state_dim(self) -> int | None:
        """Size of one simulator state, or None when the segments carry no states."""
        return None if self.states is None else self.states.shape[2]

    @classmethod
    def from_segments(
        cls, segments: Sequence[Segment], states: np.ndarray | None = None
    ) -> SegmentSet:
        """Stack single segments; they must share horizon and dimensions.

        ``states`` (``[N, H, state_dim]``) is passed through: a single :class:`Segment` has none.
        """
        if not segments:
            raise FeedbackError("cannot build a SegmentSet from an empty list of segments")
        first = segments[0]
        for i, seg in enumerate(segments):
            if seg.obs.shape != first.obs.shape or seg.acts.shape != first.acts.shape:
                raise FeedbackError(
                    f"segment {i} has obs {seg.obs.shape} / acts {seg.acts.shape}, but segment 0 "
                    f"has obs {first.obs.shape} / acts {first.acts.shape}"
                )
        has_rewards = all(s.true_rewards is not None for s in segments)
        return cls(
            np.stack([s.obs for s in segments]),
            np.stack([s.acts for s in segments]),
            np.stack([s.true_rewards for s in segments]) if has_rewards else None,
            np.array([s.episode_id for s in segments]),
            np.array([s.start for s in segments]),
            states=states,
        )

    @classmethod
    def concat(cls, sets: Sequence[SegmentSet]) -> SegmentSet:
        """The segments of ``sets`` one after another (same horizon and dimensions).

        True rewards and simulator states are kept when every set has them; ``info`` is the
        first set's.
        """
        if not sets:
            raise FeedbackError("cannot concatenate an empty list of segment sets")
        for i, other in enumerate(sets[1:], start=1):
            sets[0].check_compatible(other, f"segment set {i}")

        def joined(name: str) -> np.ndarray | None:
            arrays = [getattr(s, name) for s in sets]
            return None if any(a is None for a in arrays) else np.concatenate(arrays)

        return cls(
            joined("obs"),
            joined("acts"),
            joined("true_rewards"),
            joined("episode_id"),
            joined("start"),
            dict(sets[0].info),
            states=joined("states"),
        )

    def check_compatible(self, other: SegmentSet, what: str = "segments") -> None:
        """Raise if ``other`` has a different horizon or observation/action size."""
        mine = (self.horizon, self.obs_dim, self.act_dim)
        theirs = (other.horizon, other.obs_dim, other.act_dim)
        if mine != theirs:
            raise FeedbackError(
                f"{what} have (horizon, obs_dim, act_dim) = {theirs}, expected {mine}"
            )


@dataclass(frozen=True)
class RatedSegments:
    """Segments with one rating each, the scale they were rated on and who rated them.

    ``source`` carries the full configuration of the teacher (or app) that produced the labels,
    so a dataset on disk says how it was made. ``label_id`` (optional, one string or None per
    row) names each label the way its source knows it -- the rating app's rating id -- so a
    label withdrawn later (undo in the app) can be found and removed from a run's data.
    Simulated teachers have no use for it and leave it None.
    """

    segments: SegmentSet
    ratings: np.ndarray
    scale: RatingScale
    source: dict = field(default_factory=dict)
    rater: np.ndarray | None = None
    label_id: np.ndarray | None = None

    def __post_init__(self) -> None:
        ratings = self.scale.validate(self.ratings)
        if ratings.shape != (len(self.segments),):
            raise FeedbackError(
                f"ratings has shape {ratings.shape}, expected ({len(self.segments)},) "
                "(one rating per segment)"
            )
        object.__setattr__(self, "ratings", ratings)
        _set_label_columns(self, len(ratings))

    def __len__(self) -> int:
        return len(self.ratings)

    def class_counts(self) -> np.ndarray:
        """How many segments carry each rating level (length ``scale.n``)."""
        return np.bincount(self.ratings, minlength=self.scale.n)

    def subset(self, indices: Sequence[int] | np.ndarray) -> RatedSegments:
        idx = np.asarray(indices, dtype=np.int64)
        return RatedSegments(
            self.segments.subset(idx),
            self.ratings[idx],
            self.scale,
            dict(self.source),
            None if self.rater is None else self.rater[idx],
            None if self.label_id is None else self.label_id[idx],
        )

    @classmethod
    def concat(cls, parts: Sequence[RatedSegments]) -> RatedSegments:
        """The ratings of ``parts`` (one scale) in turn, with the first part's source; ``rater``
        and ``label_id`` kept where any part has them (None in the rows of parts without)."""
        if not parts:
            raise FeedbackError("cannot concatenate an empty list of rated segments")
        other = next((p.scale for p in parts if p.scale != parts[0].scale), None)
        if other is not None:
            raise FeedbackError(f"ratings on scale {other} cannot join ones on {parts[0].scale}")

        return cls(
            SegmentSet.concat([p.segments for p in parts]),
            np.concatenate([p.ratings for p in parts]),
            parts[0].scale,
            parts[0].source,
            concat_optional(parts, "rater"),
            concat_optional(parts, "label_id"),
        )

    def without_ids(self, ids: Collection[str]) -> RatedSegments:
        """These ratings minus every row whose ``label_id`` is in ``ids`` (rows without an id
        are kept: nothing can name them)."""
        keep = rows_without_ids(self.label_id, ids)
        return self if keep is None else self.subset(keep)


@dataclass(frozen=True)
class PreferencePairs:
    """Pairs of segments with ``label = P(second is preferred over first)``: 0, 0.5 or 1.

    0.5 is B-Pref's "equally preferable"; skipped queries are simply not stored. ``rater`` and
    ``label_id`` are optional per-pair columns, as for :class:`RatedSegments` (people's answers
    in the rating app carry them, so an undone answer can be withdrawn from a run).
    """

    first: SegmentSet
    second: SegmentSet
    labels: np.ndarray
    source: dict = field(default_factory=dict)
    rater: np.ndarray | None = None
    label_id: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.first.check_compatible(self.second, "second segments")
        if len(self.first) != len(self.second):
            raise FeedbackError(
                f"first has {len(self.first)} segments but second has {len(self.second)}"
            )
        labels = as_float_array("labels", self.labels, 1)
        if labels.shape != (len(self.first),):
            raise FeedbackError(f"labels has shape {labels.shape}, expected ({len(self.first)},)")
        outside = (labels < 0) | (labels > 1)
        if outside.any():
            i = int(np.argmax(outside))
            raise FeedbackError(f"labels[{i}] = {labels[i]} is outside [0, 1]")
        object.__setattr__(self, "labels", labels)
        _set_label_columns(self, len(labels))

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, indices: Sequence[int] | np.ndarray) -> PreferencePairs:
        idx = np.asarray(indices, dtype=np.int64)
        return PreferencePairs(
            self.first.subset(idx),
            self.second.subset(idx),
            self.labels[idx],
            dict(self.source),
            None if self.rater is None else self.rater[idx],
            None if self.label_id is None else self.label_id[idx],
        )

    def without_ids(self, ids: Collection[str]) -> PreferencePairs:
        """These pairs minus every row whose ``label_id`` is in ``ids``."""
        keep = rows_without_ids(self.label_id, ids)
        return self if keep is None else self.subset(keep)

    @classmethod
    def concat(cls, parts: Sequence[PreferencePairs]) -> PreferencePairs:
        """The pairs of ``parts`` one after another, keeping the first part's source."""
        if not parts:
            raise FeedbackError("cannot concatenate an empty list of preference pairs")
        return cls(
            SegmentSet.concat([p.first for p in parts]),
            SegmentSet.concat([p.second for p in parts]),
            np.concatenate([p.labels for p in parts]),
            parts[0].source,
            concat_optional(parts, "rater"),
            concat_optional(parts, "label_id"),
        )


def _set_label_columns(data: RatedSegments | PreferencePairs, n: int) -> None:
    """Validate the optional ``rater`` and ``label_id`` columns of ``n`` labels in place."""
    if data.rater is not None:
        object.__setattr__(data, "rater", rater_column(data.rater, n))
    if data.label_id is not None:
        object.__setattr__(data, "label_id", label_ids(data.label_id, n))
