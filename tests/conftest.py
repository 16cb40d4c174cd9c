"""Shared fixtures: small synthetic segment sets with a known reward, no simulator needed."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ratingrl.feedback.segments import SegmentSet

# Tiny nets run fastest on one thread, and two threads fight any other process on a 2-core box.
torch.set_num_threads(1)


def linear_segments(n: int, horizon: int = 10, obs_dim: int = 4, act_dim: int = 2, seed: int = 0):
    """Segments whose true reward is ``obs[..., 0] - 0.1 * |a|^2``, with varied behaviour.

    Each segment gets its own offset on the first observation, so returns spread widely
    (like a pool from bad to good policies) and a small net can learn the order.
    """
    rng = np.random.default_rng(seed)
    level = rng.uniform(-2, 2, size=(n, 1))
    obs = rng.normal(0, 0.5, size=(n, horizon, obs_dim))
    obs[..., 0] += level
    acts = rng.uniform(-1, 1, size=(n, horizon, act_dim))
    rewards = obs[..., 0] - 0.1 * (acts**2).sum(-1)
    episode = np.arange(n) // 5
    return SegmentSet(obs, acts, rewards, episode, np.zeros(n, dtype=int))


@pytest.fixture
def segments() -> SegmentSet:
    return linear_segments(400)
