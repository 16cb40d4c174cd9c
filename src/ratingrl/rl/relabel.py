"""Put the current learned reward into SB3's buffers: the whole SAC replay buffer, PPO rollouts.

SAC: after every reward update, every stored transition is rescored -- ``[0, pos)`` until the
ring buffer is ``full``, then all of it (PEBBLE's code relabels only ``[0, pos)`` and keeps
stale rewards after a wrap-around). SAC stores actions rescaled to ``[-1, 1]``; they are mapped
back to environment units first, because the reward model learned on environment actions.

PPO: the wrapper returns 0 in ``defer`` mode and :class:`PPORolloutScorer` adds the learned
reward for the whole rollout in one batch at ``on_rollout_end``, then recomputes returns and
advantages (SB3 computed them just before calling the callback). Adding keeps SB3's timeout
bootstrap ``gamma * V(terminal_obs)``, which it already put into the stored reward.
"""

from __future__ import annotations

import numpy as np
import torch
from gymnasium import spaces
from stable_baselines3.common.buffers import ReplayBuffer, RolloutBuffer
from stable_baselines3.common.callbacks import BaseCallback

from ratingrl.rl.reward_wrapper import LearnedRewardVecEnv, StepRewardFn

__all__ = [
    "score_in_batches",
    "unscale_actions",
    "relabel_replay_buffer",
    "score_rollout_buffer",
    "PPORolloutScorer",
]


def score_in_batches(
    reward_fn: StepRewardFn, obs: np.ndarray, acts: np.ndarray, batch: int = 16384
) -> np.ndarray:
    """``reward_fn`` over ``[N, d]`` inputs in chunks (bounded memory, few Python calls)."""
    out = np.empty(len(obs), dtype=np.float32)
    for s in range(0, len(obs), batch):
        out[s : s + batch] = reward_fn(obs[s : s + batch], acts[s : s + batch])
    return out


def unscale_actions(scaled: np.ndarray, space: spaces.Box) -> np.ndarray:
    """SAC's buffer actions in ``[-1, 1]`` -> environment units (SB3's ``unscale_action``)."""
    low, high = space.low.astype(np.float32), space.high.astype(np.float32)
    return low + 0.5 * (scaled + 1.0) * (high - low)


def relabel_replay_buffer(
    buffer: ReplayBuffer, reward_fn: StepRewardFn, action_space: spaces.Box | None = None
) -> int:
    """Rewrite every stored reward of ``buffer``; returns how many transitions were rescored.

    ``action_space``: pass it for SAC/TD3 buffers (actions stored scaled to ``[-1, 1]``); leave
    it out when the buffer holds environment actions.
    """
    n = buffer.buffer_size if buffer.full else buffer.pos
    if n == 0:
        return 0
    obs = buffer.observations[:n].reshape(n * buffer.n_envs, -1).astype(np.float32)
    acts = buffer.actions[:n].reshape(n * buffer.n_envs, -1).astype(np.float32)
    if action_space is not None:
        acts = unscale_actions(acts, action_space)
    rewards = score_in_batches(reward_fn, obs, acts)
    buffer.rewards[:n] = rewards.reshape(n, buffer.n_envs)
    return n * buffer.n_envs


def score_rollout_buffer(
    buffer: RolloutBuffer,
    reward_fn: StepRewardFn,
    action_space: spaces.Box,
    last_values: torch.Tensor,
    dones: np.ndarray,
) -> np.ndarray:
    """Add the learned reward to a full PPO rollout and recompute returns and advantages.

    Actions are clipped to the box exactly as SB3 clips them before ``env.step``, so the result
    equals per-step scoring in the wrapper. Returns the learned rewards ``[n_steps, n_envs]``.
    """
    n, e = buffer.buffer_size, buffer.n_envs
    obs = buffer.observations.reshape(n * e, -1).astype(np.float32)
    acts = np.clip(buffer.actions.reshape(n * e, -1), action_space.low, action_space.high)
    learned = score_in_batches(reward_fn, obs, acts.astype(np.float32)).reshape(n, e)
    buffer.rewards += learned
    buffer.compute_returns_and_advantage(last_values=last_values, dones=dones)
    return learned


class PPORolloutScorer(BaseCallback):
    """Score each PPO rollout in one batch with the wrapper's current ``reward_fn``.

    Put it *after* the online-feedback callback in a ``CallbackList`` so a rollout that ends
    with a reward update is scored by the updated model.
    """

    def __init__(self, reward_env: LearnedRewardVecEnv) -> None:
        super().__init__()
        self.reward_env = reward_env

    def _on_step(self) -> bool:
        return True

    def _on_rollout_end(self) -> None:
        reward_fn = self.reward_env.reward_fn
        if reward_fn is None or not self.reward_env.defer:
            return
        buffer = self.model.rollout_buffer
        learned = score_rollout_buffer(
            buffer,
            reward_fn,
            self.model.action_space,
            torch.as_tensor(self.locals["values"]),  # SBX's PPO keeps them as numpy
            self.locals["dones"],
        )
        self.logger.record("reward_model/rollout_reward_mean", float(learned.mean()))
