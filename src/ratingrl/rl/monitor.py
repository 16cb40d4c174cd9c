"""What a person watching a run sees, and when it is saved: progress and periodic checkpoints."""

from __future__ import annotations

import time
from collections.abc import Callable

from stable_baselines3.common.callbacks import BaseCallback

__all__ = ["TrainingMonitor"]


class TrainingMonitor(BaseCallback):
    """Progress (steps/s, labels, latest true/learned return) and a checkpoint every ``every``
    env steps, taken at a rollout end (SAC: every step; PPO: before it trains)."""

    def __init__(
        self,
        progress,
        task: int,
        status: Callable[[], str],
        checkpoint: Callable[[], None],
        every: int,
        start: int,
    ) -> None:
        super().__init__()
        self.progress, self.task, self.status = progress, task, status
        self.checkpoint, self.every = checkpoint, every
        self._next = (start // every + 1) * every
        self._t0, self._s0 = time.perf_counter(), start

    def _on_step(self) -> bool:
        if self.n_calls % 50 == 0:
            rate = (self.num_timesteps - self._s0) / max(time.perf_counter() - self._t0, 1e-9)
            self.progress.update(
                self.task,
                completed=self.num_timesteps,
                status=f"{rate:,.0f} steps/s {self.status()}",
            )
        return True

    def _on_rollout_end(self) -> None:
        if self.num_timesteps >= self._next:
            self.checkpoint()
            self._next = (self.num_timesteps // self.every + 1) * self.every
