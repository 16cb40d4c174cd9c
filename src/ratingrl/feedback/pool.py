"""Pools of segments with a wide range of behaviour quality, cached on disk by their spec.

Reward learning is only interesting when the segments span bad to good behaviour: a pool of
random-policy clips all rates "bad". A :class:`PoolSpec` describes a ladder of behaviour (a
policy saved at several stages of training, each also run with action noise); building it
trains a policy, which is why pools are cached under a hash of the spec and built once.

A pool is sized in segments, not episodes: each level of behaviour is rolled out until it gives
``segments_per_level`` segments (:func:`collect_level`). Where episodes run to the time limit
(HalfCheetah, DeepMind Control) the first ``episodes_per_policy`` episodes already do; where they
end early (Hopper, Walker2d fall over) more episodes are collected, up to ``max_level_steps``
environment steps a level.

The builder itself lives in ``ratingrl.rl.behaviour`` (it needs Stable-Baselines3); this module
only knows specs, the collection of one level, cache paths and splits.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from ratingrl.feedback.io import load_segments, save_segments
from ratingrl.feedback.rollouts import Episode, PolicyFn, collect_episodes
from ratingrl.feedback.segments import FeedbackError, SegmentSet

__all__ = [
    "PoolSpec",
    "Level",
    "collect_level",
    "short_levels",
    "default_cache_dir",
    "pool_path",
    "cached_pool",
    "split_by_episode",
]

_LATER_FIELDS = ("segments_per_level", "max_level_steps")
"""Fields added after pools were first cached: left out of the key while unset, so a pool cached
before them keeps its file (and is checked against its segment target when loaded)."""
LEVEL_STEP_EPISODES = 1000
"""Unset ``max_level_steps``: a level may take this many full-length episodes' steps. Walker2d's
random-action level gives a 50-step segment every ~3,700 steps (one episode in 200 lasts 50
steps), so its default 156 segments take ~600,000: within 1,000 episodes of 1,000 steps."""
MAX_BATCH = 2000


@dataclass(frozen=True)
class PoolSpec:
    """What goes into a pool; equal specs give equal pools (everything is seeded)."""

    env_id: str
    horizon: int = field(default=50, metadata={"help": "segment length H in env steps"})
    stride: int = field(default=25, metadata={"help": "steps between segment starts"})
    train_steps: tuple[int, ...] = field(
        default=(0, 25_000, 50_000, 100_000, 200_000),
        metadata={"help": "PPO training steps at which the behaviour policy is snapshotted"},
    )
    action_noise: tuple[float, ...] = field(
        default=(0.0, 0.3, 1.0),
        metadata={"help": "Gaussian action noise (fraction of the action half-range) per run"},
    )
    episodes_per_policy: int = field(
        default=4, metadata={"help": "episodes first collected per (stage, noise) level"}
    )
    max_episode_steps: int = field(default=1000, metadata={"help": "episodes are cut here"})
    seed: int = 0
    segments_per_level: int | None = field(
        default=None,
        metadata={
            "help": "segments each level gives at least (more episodes where they end early); "
            "unset: what episodes_per_policy full-length episodes give"
        },
    )
    max_level_steps: int | None = field(
        default=None,
        metadata={
            "help": "env steps a level may take to give its segments; unset: "
            f"{LEVEL_STEP_EPISODES} x max_episode_steps"
        },
    )

    def __post_init__(self) -> None:
        object.__setattr__(self, "train_steps", tuple(int(s) for s in self.train_steps))
        object.__setattr__(self, "action_noise", tuple(float(s) for s in self.action_noise))
        if self.horizon < 1 or self.stride < 1 or self.episodes_per_policy < 1:
            raise FeedbackError(f"PoolSpec needs positive horizon, stride and episodes: {self}")
        if self.max_episode_steps < self.horizon:
            raise FeedbackError(
                f"max_episode_steps={self.max_episode_steps} is shorter than horizon={self.horizon}"
            )
        if not self.train_steps or sorted(self.train_steps) != list(self.train_steps):
            raise FeedbackError(f"train_steps must be ascending, got {self.train_steps}")
        for name in _LATER_FIELDS:
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise FeedbackError(f"PoolSpec.{name} must be a whole number >= 1, got {value!r}")

    @property
    def segments_per_episode(self) -> int:
        """Segments one episode run to ``max_episode_steps`` gives."""
        return (self.max_episode_steps - self.horizon) // self.stride + 1

    @property
    def level_target(self) -> int:
        """Segments every level must give (``segments_per_level`` or its default)."""
        if self.segments_per_level is not None:
            return self.segments_per_level
        return self.episodes_per_policy * self.segments_per_episode

    @property
    def level_step_budget(self) -> int:
        """Env steps a level may take (``max_level_steps`` or its default)."""
        if self.max_level_steps is not None:
            return self.max_level_steps
        return LEVEL_STEP_EPISODES * self.max_episode_steps

    def to_dict(self) -> dict:
        """The spec as JSON-able fields; the later fields only when set (see ``_LATER_FIELDS``)."""
        data = asdict(self)
        for name in _LATER_FIELDS:
            if data[name] is None:
                del data[name]
        return data

    def key(self) -> str:
        """Short hash of the spec: the cache file name."""
        blob = json.dumps(self.to_dict(), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:12]


@dataclass(frozen=True)
class Level:
    """One level of behaviour as :func:`collect_level` rolled it out: the episodes kept and
    what it took (``episodes_run`` counts those too short for a segment, which are dropped)."""

    name: str
    episodes: list[Episode]
    episodes_run: int
    steps: int
    segments: int

    def summary(self) -> dict:
        """What a pool records of the level (``info["levels"]``)."""
        return {"episodes_run": self.episodes_run, "steps": self.steps, "segments": self.segments}


def collect_level(
    spec: PoolSpec,
    policy: PolicyFn,
    name: str,
    run: int,
    first_episode_id: int = 0,
    *,
    record_states: bool = False,
    on_step: Callable[[int], None] | None = None,
) -> Level:
    """Episodes of one behaviour level (the ``run``-th) until they give ``spec.level_target``
    segments, so envs whose episodes end early still fill their share of the pool.

    The first ``episodes_per_policy`` episodes are what a pool sized in episodes held (same
    seeds, same noise draws, all kept), so where they give the target the pool is unchanged.
    Then batches sized from the segments per episode so far, keeping the episodes long enough
    for a segment, until the target or the level's step budget: a level that reaches its
    budget short of the target, or shows after a tenth of it that it would, raises
    :class:`FeedbackError` saying what it gave (a policy that falls at once would otherwise
    roll out forever). Episodes are numbered from ``first_episode_id`` in the order kept.
    """
    target, budget = spec.level_target, spec.level_step_budget
    seed = spec.seed * 100_000 + run * 1000
    kept: list[Episode] = []
    episodes_run = steps = segments = 0
    batch = spec.episodes_per_policy
    while True:
        new = collect_episodes(
            spec.env_id,
            policy,
            batch,
            seed=seed + episodes_run,
            max_steps=spec.max_episode_steps,
            policy_name=name,
            on_step=on_step,
            record_states=record_states,
        )
        steps += sum(e.length for e in new)
        segments += sum(_segments_in(e.length, spec) for e in new)
        if episodes_run:  # after the first batch only the episodes that give a segment
            new = [e for e in new if e.length >= spec.horizon]
        first = first_episode_id + len(kept)
        kept += [replace(e, episode_id=first + i) for i, e in enumerate(new)]
        episodes_run += batch
        if segments >= target:
            return Level(name, kept, episodes_run, steps, segments)
        reason = _stop_reason(segments, target, steps, budget)
        if reason:
            raise FeedbackError(
                f"the pool of {spec.env_id}: level {name} gave {segments} of its {target} "
                f"segments in {steps:,} steps ({episodes_run} episodes of "
                f"{steps / episodes_run:.0f} steps on average, segments of {spec.horizon}; "
                f"{reason}): ask for fewer segments per level (segments_per_level) or allow "
                "more steps (max_level_steps)"
            )
        batch = _next_batch(target - segments, segments, episodes_run, steps, budget - steps)


def _segments_in(length: int, spec: PoolSpec) -> int:
    """Segments :func:`~ratingrl.feedback.rollouts.segment_episodes` cuts from one episode."""
    return 0 if length < spec.horizon else (length - spec.horizon) // spec.stride + 1


def _stop_reason(segments: int, target: int, steps: int, budget: int) -> str:
    """Why a level short of its target stops now ("" while it may go on): its budget spent, or
    a tenth of it spent at a rate that would give less than half the target."""
    if steps >= budget:
        return f"max_level_steps={budget:,} reached"
    if steps >= budget // 10 and 2 * segments * budget < target * steps:
        projected = segments * budget // steps
        return f"at that rate max_level_steps={budget:,} would give about {projected}"
    return ""


def _next_batch(missing: int, segments: int, episodes: int, steps: int, steps_left: int) -> int:
    """Episodes to collect next: enough at the rate so far, at most twice those so far (a rate
    from a few episodes is rough), about what the steps left allow, and at most
    ``MAX_BATCH`` (the batch is held in memory)."""
    wanted = -(-missing * episodes // segments) if segments else 2 * episodes
    affordable = max(1, steps_left * episodes // steps)
    return max(1, min(wanted, 2 * episodes, affordable, MAX_BATCH))


def short_levels(spec: PoolSpec, segments: SegmentSet) -> dict[str, int]:
    """Levels of a pool (by the behaviour that made its episodes) with fewer segments than
    ``spec.level_target``, and how many they have; empty when the pool does not say which
    episode came from which behaviour (``info["episodes"]``)."""
    episodes = segments.info.get("episodes") if segments.info else None
    if not episodes:
        return {}
    level_of = {int(i): e.get("policy", "") for i, e in episodes.items()}
    counts = Counter(level_of.get(int(i), "") for i in segments.episode_id.tolist())
    levels = dict.fromkeys(level_of.values())  # every level, one that gave no segment too
    return {level: counts[level] for level in levels if counts[level] < spec.level_target}


def default_cache_dir() -> Path:
    """``$RATINGRL_CACHE`` when set, else ``~/.cache/ratingrl``."""
    return Path(os.environ.get("RATINGRL_CACHE", Path.home() / ".cache" / "ratingrl"))


def pool_path(spec: PoolSpec, cache_dir: str | Path | None = None) -> Path:
    safe_env = spec.env_id.replace("/", "_")
    return Path(cache_dir or default_cache_dir()) / "pools" / f"{safe_env}-{spec.key()}.parquet"


def cached_pool(
    spec: PoolSpec,
    build: Callable[[PoolSpec], SegmentSet],
    cache_dir: str | Path | None = None,
) -> SegmentSet:
    """Load the pool for ``spec`` from the cache, or ``build`` it and save it there.

    A cached pool with a level short of its segment target (one built in episodes, before
    pools were sized in segments, of an env whose episodes end early) is built again.
    """
    path = pool_path(spec, cache_dir)
    if path.exists():
        segments, extra = load_segments(path)
        same = extra.get("spec") == json.loads(json.dumps(spec.to_dict()))
        if same and not short_levels(spec, segments):
            return segments
    segments = build(spec)
    save_segments(segments, path, spec=spec.to_dict())
    return segments


def split_by_episode(
    segments: SegmentSet, test_fraction: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Indices of (train, test) segments such that no episode contributes to both.

    Overlapping windows of one episode are near-duplicates; splitting by segment would let the
    test set leak into training and flatter every method.
    """
    if not 0.0 < test_fraction < 1.0:
        raise FeedbackError(f"test_fraction must be in (0, 1), got {test_fraction}")
    episodes = np.unique(segments.episode_id)
    if len(episodes) < 2:
        raise FeedbackError("a split by episode needs segments from at least two episodes")
    shuffled = rng.permutation(episodes)
    n_test = min(len(episodes) - 1, max(1, round(test_fraction * len(episodes))))
    test_mask = np.isin(segments.episode_id, shuffled[:n_test])
    return np.flatnonzero(~test_mask), np.flatnonzero(test_mask)
