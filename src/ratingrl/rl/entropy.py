"""PEBBLE's unsupervised pre-training reward: a particle estimate of state entropy.

The reward of a state is its distance to the k-th nearest neighbour (k = 5) among states seen
before, divided by a running standard deviation of those distances so its scale does not
depend on the task. Visiting new regions pays; revisiting does not. Used before the first
reward update, so the first queries see varied behaviour instead of a random policy's.
"""

from __future__ import annotations

import numpy as np
import torch
from stable_baselines3.common.running_mean_std import RunningMeanStd

__all__ = ["knn_distance", "StateEntropyReward"]


def knn_distance(x: torch.Tensor, memory: torch.Tensor, k: int = 5, chunk: int = 1024):
    """Euclidean distance of each row of ``x`` to its k-th nearest row of ``memory``.

    If ``memory`` holds fewer than k rows, the distance to the farthest one is used.
    """
    if len(memory) == 0:
        return torch.zeros(len(x))
    k = min(k, len(memory))
    out = []
    for s in range(0, len(x), chunk):
        dist = torch.cdist(x[s : s + chunk], memory)
        out.append(dist.topk(k, dim=1, largest=False).values[:, -1])
    return torch.cat(out)


class StateEntropyReward:
    """``(obs, acts) -> rewards``: k-NN distance to a ring of the last ``capacity`` states."""

    def __init__(self, obs_dim: int, k: int = 5, capacity: int = 10_000) -> None:
        self.k, self.capacity = k, capacity
        self.memory = torch.zeros(capacity, obs_dim)
        self.size = 0
        self.pos = 0
        self.stats = RunningMeanStd(shape=())

    def __call__(self, obs: np.ndarray, acts: np.ndarray) -> np.ndarray:
        del acts  # state entropy, not state-action entropy
        x = torch.as_tensor(np.asarray(obs), dtype=torch.float32)
        dist = knn_distance(x, self.memory[: self.size], self.k).numpy()
        self._remember(x)
        self.stats.update(dist.astype(np.float64))
        return (dist / (np.sqrt(self.stats.var) + 1e-8)).astype(np.float32)

    def _remember(self, x: torch.Tensor) -> None:
        for row in x:
            self.memory[self.pos] = row
            self.pos = (self.pos + 1) % self.capacity
            self.size = min(self.size + 1, self.capacity)
