"""Segments with a known reward and no simulator: for tests, examples and quick checks.

A method that cannot order these cannot order real behaviour either; they take microseconds to
make, so a reward method (a user's own included) can be tried before any environment is built.
"""

from __future__ import annotations

import numpy as np

from ratingrl.feedback.segments import SegmentSet

__all__ = ["linear_segments"]


def linear_segments(
    n: int, horizon: int = 10, obs_dim: int = 4, act_dim: int = 2, seed: int = 0
) -> SegmentSet:
    """``n`` segments whose true reward is ``obs[..., 0] - 0.1 * |a|^2``, behaviour varied.

    Each segment gets its own offset on the first observation, so returns spread widely (like a
    pool from bad to good policies) and a small net can learn their order. Five segments share
    an episode id, so episode-wise splits have something to split.
    """
    rng = np.random.default_rng(seed)
    level = rng.uniform(-2, 2, size=(n, 1))
    obs = rng.normal(0, 0.5, size=(n, horizon, obs_dim))
    obs[..., 0] += level
    acts = rng.uniform(-1, 1, size=(n, horizon, act_dim))
    rewards = obs[..., 0] - 0.1 * (acts**2).sum(-1)
    episode = np.arange(n) // 5
    return SegmentSet(obs, acts, rewards, episode, np.zeros(n, dtype=int))
