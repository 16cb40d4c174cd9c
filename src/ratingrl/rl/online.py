"""The online feedback loop as one SB3 callback: query, rate, learn the reward, relabel.

Rounds of queries follow a :class:`Schedule` (R4's growing gaps, RbRL's fixed interval, or
explicit steps). At each round the callback cuts windows from the recorder's last episodes,
lets the :class:`~ratingrl.feedback.queries.QuerySelector` pick some (or pairs of them, for
preference queries), and ``request``-s labels from a
:class:`~ratingrl.feedback.sources.RatingSource` (or a
:class:`~ratingrl.feedback.preference_source.PreferenceSource`). It ``collect``-s whatever has
arrived at every rollout end, so a simulated teacher (answers at once) and people rating in the app
(answer later) run through the same code. New labels are written to disk *before* anything is
trained on them (no label is lost to a crash), then the reward is updated -- the update's
length grows with the labels, since an epoch is a pass over all of them -- the environment
wrapper gets the new reward and SAC's whole replay buffer is relabelled.

A run may ask for several kinds of feedback at once (ratings *and* preference pairs): each kind is
a :class:`FeedbackChannel` (source, selector, store, queries per round). Every channel queries at
the same rounds, from the same candidate windows, and one updater learns from every channel's
labels. A run with one channel is the plain loop.

If the source coarsens its rating scale mid-run (R4's dynamic classes), the stored ratings are
remapped onto the new scale with the source's ``remap`` (see :func:`remap_hook`).

A source may withdraw labels it handed out (a person undoes a rating in the app; see
:func:`~ratingrl.feedback.sources.retracted`). At the next poll they are removed from the store
-- and from its Parquet file, before anything is trained -- and the reward is updated on the
labels that remain, exactly as after new labels. A withdrawn label does not free budget: its
query was asked and answered, so rounds and their counts stay as they were; the run reports
how many labels remain (``labels_used``) and how many were withdrawn (``labels_retracted``).
The update is warm-started like every other, and if the remaining labels cannot teach a reward
(one rating class left) the last model stays until they can.

Work happens in ``on_rollout_end``: for SAC (``train_freq=1``) that is every step, after the
transition is stored; for PPO it is before the rollout is scored and trained on.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from gymnasium import spaces
from stable_baselines3.common.buffers import ReplayBuffer
from stable_baselines3.common.callbacks import BaseCallback

from ratingrl.feedback.io import (
    load_preferences,
    load_rated,
    read_metadata,
    save_preferences,
    save_rated,
)
from ratingrl.feedback.preference_source import PreferenceSource, SegmentPairs
from ratingrl.feedback.queries import QuerySelector, StratifiedSelector
from ratingrl.feedback.segments import FeedbackError, PreferencePairs, RatedSegments, SegmentSet
from ratingrl.feedback.sources import RatingSource, retracted
from ratingrl.rewards.nets import RewardEnsemble
from ratingrl.rewards.training import TrainingError
from ratingrl.rl.relabel import relabel_replay_buffer
from ratingrl.rl.reward_wrapper import EpisodeRecorder, LearnedRewardVecEnv

__all__ = [
    "ScheduleError",
    "Schedule",
    "r4_gaps",
    "FeedbackStore",
    "FeedbackChannel",
    "RewardUpdater",
    "OnlineFeedback",
    "concat_rated",
    "concat_pairs",
    "Labels",
    "RemapFn",
    "remap_hook",
]

Labels = RatedSegments | PreferencePairs
"""What a source hands back: ratings or preference labels; the loop treats both alike."""

RemapFn = Callable[[np.ndarray], np.ndarray]
"""Ratings on a finer scale -> the same ratings on the source's new, coarser scale."""


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


def concat_rated(a: RatedSegments | None, b: RatedSegments) -> RatedSegments:
    """``a`` followed by ``b`` (same scale and shapes), keeping ``a``'s source."""
    if a is None:
        return b
    if a.scale != b.scale:
        raise FeedbackError(f"new ratings use scale {b.scale}, stored ones {a.scale}")
    segments = SegmentSet.concat([a.segments, b.segments])
    return RatedSegments(
        segments,
        np.concatenate([a.ratings, b.ratings]),
        a.scale,
        a.source,
        _concat_optional(a, b, "rater"),
        _concat_optional(a, b, "label_id"),
    )


def _concat_optional(a: RatedSegments, b: RatedSegments, name: str) -> np.ndarray | None:
    """``a``'s and ``b``'s optional per-row column joined (None rows where one lacks it)."""
    first, second = getattr(a, name), getattr(b, name)
    if first is None and second is None:
        return None
    first = first if first is not None else np.full(len(a), None, dtype=object)
    second = second if second is not None else np.full(len(b), None, dtype=object)
    return np.concatenate([first, second])


def concat_pairs(a: PreferencePairs | None, b: PreferencePairs) -> PreferencePairs:
    """``a``'s pairs followed by ``b``'s, keeping ``a``'s source."""
    if a is None:
        return b
    a.first.check_compatible(b.first, "new pairs")
    return PreferencePairs(
        SegmentSet.concat([a.first, b.first]),
        SegmentSet.concat([a.second, b.second]),
        np.concatenate([a.labels, b.labels]),
        a.source,
    )


def remap_hook(source: object) -> RemapFn | None:
    """The source's ``remap`` (or its teacher's, e.g. a DynamicRatingTeacher's), if it has one."""
    for owner in (source, getattr(source, "teacher", None)):
        fn = getattr(owner, "remap", None)
        if callable(fn):
            return fn
    return None


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
            "source has no remap() to carry stored ratings over"
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
    forgets one. ``remap`` carries stored ratings over when the source's rating scale changes
    (see :func:`remap_hook`). ``retracted`` counts labels removed because their source withdrew
    them (:meth:`retract`); it travels in the metadata too (``labels_retracted``), so a resumed
    run knows its reward may still have learned from one.
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
        if isinstance(labels, PreferencePairs):
            if isinstance(self.data, RatedSegments):
                raise FeedbackError("preference labels cannot join a store of ratings")
            self.data = concat_pairs(self.data, labels)
        else:
            if isinstance(self.data, PreferencePairs):
                raise FeedbackError("ratings cannot join a store of preference labels")
            if self.data is not None and self.data.scale != labels.scale:
                before = self.data.scale.n
                self.data, labels = _rescale(self.data, labels, self.remap)
                if self.data.scale.n != before:
                    self.remapped += len(self.data)
            self.data = concat_rated(self.data, labels)
        self.save()

    def retract(self, ids: Collection[str]) -> int:
        """Remove the labels whose ``label_id`` is in ``ids`` and rewrite the file; returns how
        many were removed.

        Ids the store does not hold (withdrawn before they were collected, or another run's)
        are ignored, and so are labels without ids (preference pairs, teachers' ratings).
        """
        if not isinstance(self.data, RatedSegments) or not ids:
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

    ``counts[i]`` is how many queries the channel asks in round ``i`` of the loop's schedule
    (a :meth:`Schedule.share` of its budget, or the schedule's own counts). Mixing kinds of
    feedback is then a list of channels: the loop talks to each through the same
    request/collect protocol and never asks which kind it is. ``name`` labels its log columns.
    """

    source: RatingSource | PreferenceSource
    selector: QuerySelector
    store: FeedbackStore
    counts: tuple[int, ...]
    name: str = "labels"

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
        return data if data is not None and _learnable(data) else None


RewardUpdater = Callable[
    [Sequence[Labels | None], RewardEnsemble | None], tuple[RewardEnsemble, dict]
]
"""``(labels of each channel, current model or None) -> (updated model, log row)``.

A channel's entry is None while its labels cannot teach a reward yet (one rating class, fewer
than two pairs); the loop calls the updater only when some entry is not None.
"""


class OnlineFeedback(BaseCallback):
    """The online loop; every component is passed in (channels, updater, recorder).

    The loop never asks what kind of feedback it handles: a selector's answer (``[k]``
    segment indices, or ``[k, 2]`` pair indices) becomes the source's query, and whatever the
    source hands back goes to the channel's store and, with every other channel's labels, to
    the updater. So a rating teacher, a preference teacher, both at once, or the rating app plug
    in unchanged. ``schedule.steps`` time the rounds; each channel brings its per-round counts.
    ``reward_model`` is the current reward ensemble (``self.model`` is SB3's algorithm).
    """

    def __init__(
        self,
        *,
        schedule: Schedule,
        channels: Sequence[FeedbackChannel],
        updater: RewardUpdater,
        recorder: EpisodeRecorder,
        reward_env: LearnedRewardVecEnv,
        horizon: int,
        rng: np.random.Generator,
        candidate_stride: int = 10,
        candidate_factor: int = 10,
        model: RewardEnsemble | None = None,
        on_update: Callable[[OnlineFeedback], None] | None = None,
    ) -> None:
        super().__init__()
        _check_channels(schedule, channels)
        self.schedule, self.channels = schedule, tuple(channels)
        self.updater, self.recorder = updater, recorder
        self.reward_env, self.horizon, self.rng = reward_env, horizon, rng
        self.candidate_stride, self.candidate_factor = candidate_stride, candidate_factor
        self.reward_model = model
        self.on_update = on_update
        self.trained_on = self.labels if model is not None else 0
        self.trained_retracted = self.retracted if model is not None else 0
        self.update_seconds = 0.0

    @property
    def labels(self) -> int:
        """Labels stored so far, over every channel (withdrawn ones no longer count)."""
        return sum(len(c.store) for c in self.channels)

    @property
    def retracted(self) -> int:
        """Labels withdrawn by their sources and removed from the stores, over every channel."""
        return sum(c.store.retracted for c in self.channels)

    @property
    def stale(self) -> bool:
        """Whether the labels changed since the reward was last trained: some arrived, or some
        were withdrawn (then the count alone may not tell: one out, one in)."""
        return self.labels > self.trained_on or self.retracted > self.trained_retracted

    def _mark_trained(self) -> None:
        """Remember the labels as of now, so the next update waits for a change."""
        self.trained_on, self.trained_retracted = self.labels, self.retracted

    # -- SB3 hooks -----------------------------------------------------------------------------
    def _on_step(self) -> bool:
        return True

    def _on_rollout_end(self) -> None:
        while due := [c for c in self.channels if c.due(self.schedule.steps, self.num_timesteps)]:
            if not self._query(due):
                break  # not enough finished episodes yet: try again at the next rollout end
        self.poll()

    # -- the loop ------------------------------------------------------------------------------
    def returns_fn(self, obs: np.ndarray, acts: np.ndarray) -> np.ndarray:
        """Ensemble returns for the selectors (zeros before the first reward model)."""
        if self.reward_model is None:
            return np.zeros((1, len(obs)))
        return self.reward_model.predict_returns(obs, acts)

    def _query(self, due: list[FeedbackChannel]) -> bool:
        """Ask every due channel its round's queries, all from the same candidate windows."""
        try:
            windows = self.recorder.segments(self.horizon, self.candidate_stride)
        except FeedbackError:
            return False
        counts = [c.counts[c.store.rounds_done] for c in due]
        if len(windows) < max(*counts, 2):
            return False
        for channel, k in zip(due, counts, strict=True):
            candidates = windows
            if not channel.episode_based():
                m = min(len(windows), self.candidate_factor * k)
                candidates = windows.subset(np.sort(self.rng.choice(len(windows), m, False)))
            picked = np.asarray(channel.selector.select(candidates, k, self.returns_fn, self.rng))
            channel.source.request(_queries(candidates, picked))
            channel.store.rounds_done += 1
        self.logger.record("feedback/requested", sum(counts))
        self._record_each("requested", {c.name: k for c, k in zip(due, counts, strict=True)})
        return True

    def poll(self, timeout: float = 0.0) -> None:
        """Store whatever labels arrived (each channel waits up to ``timeout`` s), drop the ones
        their source withdrew; update the reward when the labels changed.

        Withdrawals are asked for after the new labels are stored, so a label collected and
        withdrawn between two polls leaves in the same poll it arrived.
        """
        for channel in self.channels:
            self._collect(channel, timeout)
            ids = retracted(channel.source)
            if ids and channel.store.retract(ids):
                self.logger.record("feedback/retracted", self.retracted)
        if self.stale:
            self.update_reward()

    def _collect(self, channel: FeedbackChannel, timeout: float) -> None:
        """Store the channel's new labels (on disk before anything trains on them)."""
        labels = channel.source.collect(timeout)
        if labels is None or not len(labels):
            return
        remapped = channel.store.remapped
        channel.store.add(labels)
        if channel.store.remapped > remapped:
            self.logger.record("feedback/remapped", sum(c.store.remapped for c in self.channels))

    def update_reward(self) -> None:
        """Train on every label so far, swap the env's reward, relabel SAC's replay buffer."""
        data = [c.learnable() for c in self.channels]
        if all(d is None for d in data):
            self.logger.record("feedback/waiting_for_second_class", 1)
            self._mark_trained()  # retry when new labels arrive, not every step
            return
        started = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # empty classes early on are expected
            try:
                self.reward_model, row = self.updater(data, self.reward_model)
            except TrainingError as err:  # e.g. R4's split holds one class: wait for labels
                self.logger.record("reward_model/skipped", str(err)[:80])
                self._mark_trained()
                return
        self._mark_trained()
        self.reward_env.reward_fn = self.reward_model.predict_rewards
        relabelled = self._relabel()
        self.update_seconds += time.perf_counter() - started
        self.logger.record("feedback/labels", self.labels)
        self.logger.record("feedback/rounds", min(c.store.rounds_done for c in self.channels))
        self._record_each("labels", {c.name: len(c.store) for c in self.channels})
        self.logger.record("reward_model/relabelled", relabelled)
        for key, value in row.items():
            self.logger.record(f"reward_model/{key}", value)
        if self.on_update is not None:
            self.on_update(self)

    def _record_each(self, key: str, values: dict[str, int]) -> None:
        """Per-channel columns (``feedback/labels_pairs``), only when there are several."""
        if len(self.channels) > 1:
            for name, value in values.items():
                self.logger.record(f"feedback/{key}_{name}", value)

    def _relabel(self) -> int:
        buffer = getattr(self.model, "replay_buffer", None)  # self.model: the SB3 algorithm
        if not isinstance(buffer, ReplayBuffer) or self.reward_model is None:
            return 0
        space = self.model.action_space
        box = space if isinstance(space, spaces.Box) else None
        return relabel_replay_buffer(buffer, self.reward_model.predict_rewards, box)


def _check_channels(schedule: Schedule, channels: Sequence[FeedbackChannel]) -> None:
    """Every channel needs a count for each round; names must tell their log columns apart."""
    if not channels:
        raise ScheduleError("the online loop needs at least one feedback channel")
    for channel in channels:
        if len(channel.counts) != len(schedule.steps) or min(channel.counts) < 1:
            raise ScheduleError(
                f"channel {channel.name!r} asks {channel.counts} queries but the schedule has "
                f"{len(schedule.steps)} rounds: give each round a count >= 1"
            )
    names = [c.name for c in channels]
    if len(set(names)) != len(names):
        raise ScheduleError(f"feedback channels need distinct names, got {names}")


def _queries(candidates: SegmentSet, picked: np.ndarray) -> SegmentSet | SegmentPairs:
    """``[k]`` indices -> segments to rate; ``[k, 2]`` -> pairs to compare."""
    if picked.ndim == 2:
        return SegmentPairs(candidates.subset(picked[:, 0]), candidates.subset(picked[:, 1]))
    return candidates.subset(picked)


def _learnable(data: Labels) -> bool:
    """Ratings need two classes (one class says nothing about order); pairs need two pairs."""
    if isinstance(data, PreferencePairs):
        return len(data) >= 2
    return len(np.unique(data.ratings)) >= 2
