import numpy as np
import pytest

from ratingrl.feedback.envs import EnvError, make_env
from ratingrl.feedback.io import DatasetError
from ratingrl.feedback.pool import PoolSpec, cached_pool, pool_path, split_by_episode
from ratingrl.feedback.rollouts import (
    collect_episodes,
    noisy_policy,
    random_policy,
    segment_episodes,
)
from ratingrl.feedback.segments import FeedbackError


def test_dmc_ids_are_flattened_and_gym_ids_work():
    env = make_env("dmc/cartpole-balance")
    obs, _ = env.reset(seed=0)
    assert obs.ndim == 1 and obs.shape == env.observation_space.shape == (5,)
    env.close()
    assert make_env("Pendulum-v1").observation_space.shape == (3,)


def test_unknown_envs_are_named():
    with pytest.raises(EnvError, match="unknown environment 'dmc/walker-fly'"):
        make_env("dmc/walker-fly")
    with pytest.raises(EnvError, match="unknown environment 'NoSuchEnv-v0'"):
        make_env("NoSuchEnv-v0")


def test_collect_episodes_are_whole_and_reproducible():
    env = make_env("Pendulum-v1")
    low, high = env.action_space.low, env.action_space.high
    policy = lambda obs: np.zeros((len(obs), 1))  # noqa: E731
    eps = collect_episodes("Pendulum-v1", policy, 3, seed=5, n_envs=2, max_steps=40)
    assert [e.length for e in eps] == [40, 40, 40]
    assert [e.episode_id for e in eps] == [0, 1, 2]
    again = collect_episodes("Pendulum-v1", policy, 3, seed=5, n_envs=3, max_steps=40)
    np.testing.assert_allclose(eps[2].obs, again[2].obs)  # independent of n_envs
    # obs[t] is the state the action was taken in: the reward follows from obs (Pendulum's cost)
    th = np.arctan2(eps[0].obs[:, 1], eps[0].obs[:, 0])
    cost = th**2 + 0.1 * eps[0].obs[:, 2] ** 2
    np.testing.assert_allclose(-cost, eps[0].rewards, rtol=1e-4, atol=1e-4)
    noisy = noisy_policy(policy, 0.5, low, high, np.random.default_rng(0))
    acts = noisy(np.zeros((1000, 3)))
    assert np.all(acts <= high) and np.all(acts >= low) and acts.std() > 0.5
    rand = random_policy(low, high, np.random.default_rng(0))(np.zeros((4, 3)))
    assert rand.shape == (4, 1)


def test_segment_episodes_windows():
    eps = collect_episodes("Pendulum-v1", lambda o: np.zeros((len(o), 1)), 2, 0, max_steps=30)
    seg = segment_episodes(eps, horizon=10, stride=5)
    assert len(seg) == 2 * 5  # starts 0, 5, 10, 15, 20
    assert seg.start.tolist()[:5] == [0, 5, 10, 15, 20]
    np.testing.assert_allclose(seg.true_rewards[1], eps[0].rewards[5:15])
    with pytest.raises(FeedbackError, match="horizon=50"):
        segment_episodes(eps, horizon=50)


def test_pool_is_built_once_then_cached(tmp_path, linear_segments):
    calls = []

    def build(spec):
        calls.append(spec)
        return linear_segments(20)

    spec = PoolSpec("Pendulum-v1", horizon=10, train_steps=(0,), max_episode_steps=50)
    first = cached_pool(spec, build, tmp_path)
    second = cached_pool(spec, build, tmp_path)
    assert len(calls) == 1
    np.testing.assert_allclose(first.obs, second.obs)
    assert pool_path(spec, tmp_path).exists()
    other = PoolSpec("Pendulum-v1", horizon=10, train_steps=(0,), max_episode_steps=50, seed=1)
    assert pool_path(other, tmp_path) != pool_path(spec, tmp_path)


def test_corrupt_cached_pool_is_reported(tmp_path, linear_segments):
    spec = PoolSpec("Pendulum-v1", horizon=10, train_steps=(0,), max_episode_steps=50)
    path = pool_path(spec, tmp_path)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"garbage")
    with pytest.raises(DatasetError, match="not a readable Parquet file"):
        cached_pool(spec, lambda s: linear_segments(5), tmp_path)


def test_split_by_episode_never_shares_an_episode(linear_segments):
    seg = linear_segments(100)  # 5 segments per episode
    train, test = split_by_episode(seg, 0.3, np.random.default_rng(0))
    assert set(seg.episode_id[train]).isdisjoint(seg.episode_id[test])
    assert len(train) + len(test) == 100
    assert abs(len(test) - 30) <= 5


def test_pool_spec_validation():
    with pytest.raises(FeedbackError, match="shorter than horizon"):
        PoolSpec("Pendulum-v1", horizon=100, max_episode_steps=50)
    with pytest.raises(FeedbackError, match="ascending"):
        PoolSpec("Pendulum-v1", train_steps=(10, 0))


def test_sb3_model_rollouts_come_from_a_frozen_snapshot():
    import torch
    from stable_baselines3 import PPO

    from ratingrl.rl.behaviour import sb3_policy_fn

    model = PPO("MlpPolicy", "Pendulum-v1", n_steps=64, batch_size=32, seed=0, device="cpu")
    act = sb3_policy_fn(model)
    obs = np.zeros((4, 3), dtype=np.float32)
    before = act(obs)
    with torch.no_grad():
        for p in model.policy.parameters():
            p.add_(1.0)  # the learner moves on ...
    np.testing.assert_allclose(act(obs), before)  # ... the snapshot does not
    eps = collect_episodes("Pendulum-v1", act, 2, seed=0, max_steps=20)
    assert [e.length for e in eps] == [20, 20] and eps[0].acts.shape == (20, 1)
