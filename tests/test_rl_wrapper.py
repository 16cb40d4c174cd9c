"""The learned-reward wrapper scores (s_t, a_t) of real steps only, and records whole episodes
(with the simulator state of every step when asked)."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium import spaces
from stable_baselines3.common.vec_env import DummyVecEnv

from ratingrl.feedback.envs import PhysicsStateWrapper, make_env
from ratingrl.rl.entropy import StateEntropyReward, knn_distance
from ratingrl.rl.reward_wrapper import EpisodeRecorder, LearnedRewardVecEnv, zero_reward


class Counter(gym.Env):
    """obs = [episode number, step in episode]; episodes last ``length`` steps; reward 7."""

    observation_space = spaces.Box(-1e6, 1e6, (2,), np.float32)
    action_space = spaces.Box(-1, 1, (1,), np.float32)

    def __init__(self, length: int) -> None:
        self.length, self.episode, self.t = length, -1, 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.episode, self.t = self.episode + 1, 0
        return self._obs(), {}

    def step(self, action):
        self.t += 1
        return self._obs(), 7.0, self.t >= self.length, False, {}

    def _obs(self):
        return np.array([self.episode, self.t], np.float32)


def test_reset_observation_is_never_scored_as_the_previous_episode():
    seen = []

    def reward_fn(obs, acts):
        seen.append(obs.copy())
        return obs[:, 1]  # reward = step index of the state the action was taken on

    venv = DummyVecEnv([lambda: Counter(5), lambda: Counter(3)])
    recorder = EpisodeRecorder(2, capacity=100)
    env = LearnedRewardVecEnv(venv, reward_fn, recorder=recorder)
    env.reset()
    for _ in range(30):
        _, rewards, dones, infos = env.step(np.zeros((2, 1), np.float32))
        assert all(info["env_reward"] == 7.0 for info in infos)
    states = np.concatenate(seen)
    # every scored state is a real pre-action state: t in 0..length-1, never the terminal t
    assert states[0::2, 1].max() == 4 and states[1::2, 1].max() == 2
    assert len(recorder.episodes) == 6 + 10
    for ep in recorder.episodes:
        assert (ep.obs[:, 0] == ep.obs[0, 0]).all()  # one episode's states only
        np.testing.assert_array_equal(ep.obs[:, 1], np.arange(ep.length))
        assert (ep.rewards == 7.0).all()


def test_oracle_passes_env_reward_and_defer_returns_zero():
    venv = DummyVecEnv([lambda: Counter(4)])
    oracle = LearnedRewardVecEnv(venv, None)
    oracle.reset()
    assert oracle.step(np.zeros((1, 1)))[1][0] == 7.0
    deferred = LearnedRewardVecEnv(
        DummyVecEnv([lambda: Counter(4)]), lambda o, a: o[:, 1] + 1, defer=True
    )
    deferred.reset()
    assert deferred.step(np.zeros((1, 1)))[1][0] == 0.0


def test_recorder_segments_stay_inside_episodes():
    recorder = EpisodeRecorder(1, capacity=3)
    for t in range(25):
        recorder.add(
            np.array([[t]], np.float32), np.zeros((1, 1)), np.ones(1), np.array([t % 5 == 4])
        )
    assert len(recorder.episodes) == 3  # capacity keeps the last three
    segs = recorder.segments(horizon=3, stride=1)
    assert len(segs) == 3 * 3
    assert (np.diff(segs.obs[..., 0], axis=1) == 1).all()  # never crosses an episode boundary


def test_recorded_states_match_the_observations_across_autoresets(observation_in):
    """states[t] is the state obs[t] was observed in, also on the first step after a same-step
    reset (the sub-env already holds the next episode's reset state when step() returns)."""
    lengths = (7, 5)  # sub-envs end their episodes at different steps
    venv = DummyVecEnv(
        [
            lambda n=n: PhysicsStateWrapper(make_env("dmc/cartpole-balance", max_episode_steps=n))
            for n in lengths
        ]
    )
    venv.seed(0)
    recorder = EpisodeRecorder(2, capacity=100, record_states=True)
    env = LearnedRewardVecEnv(venv, zero_reward, recorder=recorder)
    env.reset()
    rng = np.random.default_rng(0)
    for _ in range(30):
        env.step(rng.uniform(-1, 1, size=(2, 1)).astype(np.float32))
    env.close()
    assert len(recorder.episodes) == 30 // 7 + 30 // 5
    probe = make_env("dmc/cartpole-balance")
    probe.reset(seed=123)  # a different start: only the set state can reproduce the obs
    try:
        for ep in recorder.episodes:
            assert ep.states.shape == (ep.length, 4) and ep.states.dtype == np.float64
            for t in range(ep.length):
                obs = observation_in(probe, ep.states[t])
                np.testing.assert_allclose(
                    obs, ep.obs[t], atol=1e-5, err_msg=f"{ep.episode_id=} {t=}"
                )
    finally:
        probe.close()
    segments = recorder.segments(horizon=4, stride=1)
    assert segments.states is not None and segments.states.shape == (len(segments), 4, 4)
    # a checkpoint keeps the states
    restored = EpisodeRecorder(2, capacity=100, record_states=True)
    restored.load_state_dict(recorder.state_dict())
    np.testing.assert_array_equal(restored.segments(4, 1).states, segments.states)


def test_recorder_keeps_no_states_unless_asked():
    """Without record_states no sub-env is asked for its state (Counter has none to give)."""
    venv = DummyVecEnv([lambda: Counter(3)])
    recorder = EpisodeRecorder(1)
    env = LearnedRewardVecEnv(venv, zero_reward, recorder=recorder)
    env.reset()
    for _ in range(6):
        env.step(np.zeros((1, 1), np.float32))
    assert len(recorder.episodes) == 2 and all(ep.states is None for ep in recorder.episodes)
    assert recorder.segments(horizon=3).states is None
    with pytest.raises(ValueError, match="PhysicsStateWrapper"):
        LearnedRewardVecEnv(venv, zero_reward, recorder=EpisodeRecorder(1, record_states=True))


def test_a_recorder_with_states_drops_restored_episodes_without_them():
    """One stateless episode among the candidates would strip states from every query."""
    old = EpisodeRecorder(1)
    for t in range(6):
        old.add(np.zeros((1, 2)), np.zeros((1, 1)), np.ones(1), np.array([t % 3 == 2]))
    new = EpisodeRecorder(1, record_states=True)
    new.load_state_dict(old.state_dict())
    assert len(new.episodes) == 0 and new.next_id == 2
    with pytest.raises(ValueError, match="needs states"):
        new.add(np.zeros((1, 2)), np.zeros((1, 1)), np.ones(1), np.array([False]))


def test_knn_entropy_rewards_novel_states():
    memory = torch.zeros(10, 2)
    d = knn_distance(torch.tensor([[0.0, 0.0], [3.0, 4.0]]), memory, k=5)
    assert d.tolist() == [0.0, 5.0]
    reward = StateEntropyReward(obs_dim=2, k=5, capacity=50)
    for _ in range(10):
        reward(np.zeros((1, 2)), None)
    near, far = reward(np.zeros((1, 2)), None)[0], reward(np.full((1, 2), 10.0), None)[0]
    assert far > near == 0.0
