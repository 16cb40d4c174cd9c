"""Pools of segments with a wide range of behaviour quality, cached on disk by their spec.

Reward learning is only interesting when the segments span bad to good behaviour: a pool of
random-policy clips all rates "bad". A :class:`PoolSpec` describes a ladder of behaviour (a
policy saved at several stages of training, each also run with action noise); building it
trains a policy, which is why pools are cached under a hash of the spec and built once.

The builder itself lives in ``ratingrl.rl.behaviour`` (it needs Stable-Baselines3); this module
only knows specs, cache paths and splits.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ratingrl.feedback.io import load_segments, save_segments
from ratingrl.feedback.segments import FeedbackError, SegmentSet

__all__ = ["PoolSpec", "default_cache_dir", "pool_path", "cached_pool", "split_by_episode"]


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
    episodes_per_policy: int = field(default=4, metadata={"help": "episodes per (stage, noise)"})
    max_episode_steps: int = field(default=1000, metadata={"help": "episodes are cut here"})
    seed: int = 0

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

    def to_dict(self) -> dict:
        return asdict(self)

    def key(self) -> str:
        """Short hash of the spec: the cache file name."""
        blob = json.dumps(self.to_dict(), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:12]


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
    """Load the pool for ``spec`` from the cache, or ``build`` it and save it there."""
    path = pool_path(spec, cache_dir)
    if path.exists():
        segments, extra = load_segments(path)
        if extra.get("spec") == json.loads(json.dumps(spec.to_dict())):
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
