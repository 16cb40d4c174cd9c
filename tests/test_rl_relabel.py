"""The SAC buffer relabel and the PPO batch scorer write exactly the rewards they should."""

from __future__ import annotations

import numpy as np
from gymnasium import spaces
from stable_baselines3 import PPO
from stable_baselines3.common.buffers import ReplayBuffer
from stable_baselines3.common.callbacks import BaseCallback, CallbackList
from stable_baselines3.common.env_util import make_vec_env

from ratingrl.rl.relabel import PPORolloutScorer, relabel_replay_buffer, unscale_actions
from ratingrl.rl.reward_wrapper import LearnedRewardVecEnv

OBS = spaces.Box(-10, 10, (3,), np.float32)
ACT = spaces.Box(np.array([-2.0, 0.0], np.float32), np.array([2.0, 4.0], np.float32))


def reward_fn(obs: np.ndarray, acts: np.ndarray) -> np.ndarray:
    return (obs[:, 0] + 10 * acts[:, 0] + 100 * acts[:, 1]).astype(np.float32)


def _fill(buffer: ReplayBuffer, n: int, rng) -> None:
    for _ in range(n):
        buffer.add(
            rng.normal(size=(buffer.n_envs, 3)),
            rng.normal(size=(buffer.n_envs, 3)),
            rng.uniform(-1, 1, size=(buffer.n_envs, 2)),  # SAC stores scaled actions
            np.full(buffer.n_envs, -999.0),
            np.zeros(buffer.n_envs),
            [{} for _ in range(buffer.n_envs)],
        )


def _expected(buffer: ReplayBuffer, n: int) -> np.ndarray:
    obs = buffer.observations[:n].reshape(-1, 3)
    acts = unscale_actions(buffer.actions[:n].reshape(-1, 2), ACT)
    return reward_fn(obs, acts).reshape(n, buffer.n_envs)


def test_relabel_before_wrap_touches_exactly_the_filled_part():
    buffer = ReplayBuffer(100, OBS, ACT, device="cpu", n_envs=2)  # 50 slots x 2 envs
    _fill(buffer, 20, np.random.default_rng(0))
    assert relabel_replay_buffer(buffer, reward_fn, ACT) == 40
    np.testing.assert_allclose(buffer.rewards[:20], _expected(buffer, 20), rtol=1e-5)
    assert (buffer.rewards[20:] == 0).all()


def test_relabel_after_wraparound_rewrites_every_slot():
    buffer = ReplayBuffer(100, OBS, ACT, device="cpu", n_envs=2)  # 50 slots x 2 envs
    _fill(buffer, 73, np.random.default_rng(1))  # wrapped: pos = 23, full
    assert buffer.full and buffer.pos == 23
    assert relabel_replay_buffer(buffer, reward_fn, ACT) == 100
    assert not (buffer.rewards == -999.0).any()  # no stale reward anywhere, also beyond pos
    np.testing.assert_allclose(buffer.rewards, _expected(buffer, 50), rtol=1e-5)


def test_unscale_matches_sb3_policy():
    from stable_baselines3.common.policies import BasePolicy

    scaled = np.random.default_rng(0).uniform(-1, 1, size=(5, 2)).astype(np.float32)

    class Policy(BasePolicy):
        def _predict(self, observation, deterministic=False):
            raise NotImplementedError

    policy = Policy(OBS, ACT)
    np.testing.assert_allclose(unscale_actions(scaled, ACT), policy.unscale_action(scaled), 1e-6)


class _Capture(BaseCallback):
    def _on_step(self) -> bool:
        return True

    def _on_rollout_end(self) -> None:
        buf = self.model.rollout_buffer
        self.rewards = buf.rewards.copy()
        self.returns = buf.returns.copy()
        self.advantages = buf.advantages.copy()


def _ppo_rollout(defer: bool):
    env = make_vec_env("Pendulum-v1", n_envs=2, seed=0, env_kwargs={"max_episode_steps": 40})

    def fn(obs, acts):
        return (obs[:, 0] - 0.1 * acts[:, 0] ** 2).astype(np.float32)

    wrapped = LearnedRewardVecEnv(env, fn, defer=defer)
    model = PPO(
        "MlpPolicy",
        wrapped,
        n_steps=64,
        batch_size=64,
        n_epochs=1,
        seed=0,
        device="cpu",
        policy_kwargs={"net_arch": [16]},
    )
    capture = _Capture()
    callbacks = [PPORolloutScorer(wrapped), capture] if defer else [capture]
    model.learn(64 * 2, callback=CallbackList(callbacks))
    return capture


def test_ppo_batch_scoring_equals_per_step_scoring():
    per_step, batched = _ppo_rollout(False), _ppo_rollout(True)
    # episodes of 40 steps inside a 64-step rollout: includes time-limit bootstraps
    np.testing.assert_allclose(batched.rewards, per_step.rewards, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(batched.returns, per_step.returns, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(batched.advantages, per_step.advantages, rtol=1e-4, atol=1e-4)
