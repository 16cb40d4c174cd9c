"""EPIC distance (Gleave et al. 2021): exact answers on tables, the sample-based estimator on a
tiny system with a known reward, the true reward from a restored simulator state, and the
column in the fidelity benchmark."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from ratingrl.experiments.epic import (
    FALLBACK,
    SIMULATOR,
    EpicConfig,
    SimulatorReward,
    epic_to_true,
    learned_samples,
    sample_coverage,
    true_samples,
)
from ratingrl.feedback.envs import make_env
from ratingrl.feedback.io import save_segments
from ratingrl.feedback.pool import PoolSpec, pool_path
from ratingrl.feedback.rollouts import collect_episodes, random_policy, segment_episodes
from ratingrl.feedback.segments import SegmentSet
from ratingrl.rewards.epic import (
    RewardSamples,
    canonicalize,
    epic_distance,
    epic_from_samples,
    pearson_distance,
)

GAMMA = 0.9


# -- Pearson distance --------------------------------------------------------------------------
def test_pearson_distance_exact_values():
    x = np.array([1.0, 2.0, 3.0])
    assert pearson_distance(x, 2 * x + 3) == pytest.approx(0.0, abs=1e-7)
    assert pearson_distance(x, -x) == pytest.approx(1.0)
    # centred (-1, 0, 1) and (-1, 1, 0): covariance 1, variances 2, rho 1/2 -> sqrt(1/4)
    assert pearson_distance(x, np.array([1.0, 3.0, 2.0])) == pytest.approx(0.5)
    assert np.isnan(pearson_distance(x, np.full(3, 4.0)))  # a constant has no direction


def test_pearson_distance_weights_count_as_repeats():
    x, y, w = np.array([0.0, 1.0, 2.0]), np.array([0.0, 2.0, 1.0]), np.array([2.0, 1.0, 1.0])
    repeated = pearson_distance(np.array([0.0, 0.0, 1.0, 2.0]), np.array([0.0, 0.0, 2.0, 1.0]))
    assert pearson_distance(x, y, w) == pytest.approx(repeated)


def test_independent_rewards_are_sqrt_half_apart():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(2, 200_000))
    assert pearson_distance(x, y) == pytest.approx(np.sqrt(0.5), abs=0.003)


def test_pearson_distance_refuses_mismatched_inputs():
    with pytest.raises(ValueError, match="equal sizes"):
        pearson_distance(np.zeros(3), np.zeros(4))
    with pytest.raises(ValueError, match="weights must be finite, non-negative"):
        pearson_distance(np.arange(3.0), np.arange(3.0), np.array([1.0, -1.0, 1.0]))


# -- canonicalisation on tables, by hand ---------------------------------------------------------
def test_canonical_reward_of_arriving_in_a_state_by_hand():
    # two states, one action, uniform D_S, gamma 1/2; R = 1 on arriving in state 1:
    # E[R(x, A, S')] = 1/2 for every x, E[R(S, A, S')] = 1/2, so C(R) = R + 1/4 - 1/2 - 1/4
    arrive = np.zeros((2, 1, 2))
    arrive[:, :, 1] = 1.0
    np.testing.assert_allclose(canonicalize(arrive, 0.5), arrive - 0.5)
    # R = 1 on leaving state 1: E[R(x, A, S')] = x, so C(R) = s + s'/2 - s - 1/4 = s'/2 - 1/4
    leave = np.zeros((2, 1, 2))
    leave[1] = 1.0
    expected = np.broadcast_to(np.array([0.0, 0.5]) - 0.25, (2, 1, 2))
    np.testing.assert_allclose(canonicalize(leave, 0.5), expected)
    # so being in a state is worth gamma times arriving in it, and EPIC sees no difference
    assert epic_distance(arrive, leave, 0.5) == pytest.approx(0.0, abs=1e-7)


def test_canonical_reward_weighs_actions_by_d_a():
    # one state, R = a: E[R] = P(a = 1) = 1/4, C(R) = a + gamma/4 - 1/4 - gamma/4 = a - 1/4
    reward = np.array([0.0, 1.0]).reshape(1, 2, 1)
    np.testing.assert_allclose(
        canonicalize(reward, GAMMA, action_dist=np.array([3.0, 1.0])).ravel(), [-0.25, 0.75]
    )


def _table(rng, s=6, a=3):
    return rng.normal(size=(s, a, s))


def test_shaping_scale_and_shift_leave_the_canonical_reward_and_distance_unchanged():
    rng = np.random.default_rng(1)
    reward, phi = _table(rng), rng.normal(size=6)
    p_s, p_a = rng.uniform(0.1, 1, 6), rng.uniform(0.1, 1, 3)
    shaped = 3.0 * (reward + GAMMA * phi[None, None, :] - phi[:, None, None]) + 2.0
    np.testing.assert_allclose(
        canonicalize(shaped, GAMMA, p_s, p_a), 3.0 * canonicalize(reward, GAMMA, p_s, p_a)
    )
    d = rng.uniform(size=(6, 3, 6))
    assert epic_distance(reward, shaped, GAMMA, p_s, p_a, d) == pytest.approx(0.0, abs=1e-7)
    assert epic_distance(reward, -shaped, GAMMA, p_s, p_a, d) == pytest.approx(1.0)
    # shaping is invisible only to the canonical form: the raw rewards are far apart
    assert pearson_distance(reward, shaped, d) > 0.2


def test_unrelated_tables_are_about_sqrt_half_apart():
    rng = np.random.default_rng(2)
    distance = epic_distance(_table(rng, 40, 5), _table(rng, 40, 5), GAMMA)
    assert distance == pytest.approx(np.sqrt(0.5), abs=0.02)


def test_canonicalize_refuses_bad_tables():
    with pytest.raises(ValueError, match=r"shape \[S, A, S\]"):
        canonicalize(np.zeros((2, 1, 3)), GAMMA)
    with pytest.raises(ValueError, match="gamma must be in"):
        canonicalize(np.zeros((2, 1, 2)), 1.5)
    with pytest.raises(ValueError, match="action_dist has shape"):
        canonicalize(np.zeros((2, 1, 2)), GAMMA, action_dist=np.ones(2))


# -- the sample-based estimator ------------------------------------------------------------------
def _samples_of(table: np.ndarray) -> RewardSamples:
    """A table on samples that enumerate it: every (s, a, s') a transition, every (A, S') a
    coverage sample -- the empirical distributions are then the uniform ones."""
    s, a, _ = table.shape
    src, _, dst = (i.ravel() for i in np.indices(table.shape))
    flat = table.reshape(s, a * s)  # [x, (A, S')]
    return RewardSamples(table.ravel(), flat[src], flat[dst])


def test_samples_that_enumerate_a_table_give_the_exact_answer():
    rng = np.random.default_rng(3)
    a, b = _table(rng), _table(rng)
    exact = canonicalize(a, GAMMA).ravel()
    got = _samples_of(a).canonical(GAMMA)
    np.testing.assert_allclose(got - got.mean(), exact - exact.mean())  # up to the constant
    assert epic_from_samples(_samples_of(a), _samples_of(b), GAMMA) == pytest.approx(
        epic_distance(a, b, GAMMA)
    )


def test_reward_samples_refuse_mismatched_shapes():
    with pytest.raises(ValueError, match=r"from_next has shape \(3, 2\), expected \(2, M >= 1\)"):
        RewardSamples(np.zeros(2), np.zeros((2, 2)), np.zeros((3, 2)))
    one, other = (RewardSamples(np.zeros(2), np.zeros((2, m)), np.zeros((2, m))) for m in (2, 3))
    with pytest.raises(ValueError, match="evaluated on different samples"):
        epic_from_samples(one, other, GAMMA)


# -- sampling a pool: a tiny system whose true reward is known in closed form -------------------
def _step(states: np.ndarray, acts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A point mass: (position, velocity), pushed by the action; reward = new velocity minus a
    control cost, so it depends on the state and the action, like a MuJoCo running task."""
    vel = 0.9 * states[:, 1] + 0.1 * acts[:, 0]
    return np.stack([states[:, 0] + 0.1 * vel, vel], axis=1), vel - 0.05 * acts[:, 0] ** 2


def _true_reward(states: np.ndarray, acts: np.ndarray) -> np.ndarray:
    return _step(states, acts)[1]


def _tiny_pool(n_episodes: int = 30, length: int = 20, horizon: int = 5) -> SegmentSet:
    rng = np.random.default_rng(4)
    x = rng.normal(size=(n_episodes, 2))
    bias = rng.uniform(-1, 1, size=(n_episodes, 1))  # behaviour from bad to good
    states, acts, rewards = [], [], []
    for _ in range(length):
        a = np.clip(bias + 0.5 * rng.normal(size=(n_episodes, 1)), -1, 1)
        states.append(x)
        acts.append(a)
        x, r = _step(x, a)
        rewards.append(r)
    states, acts, rewards = (np.stack(v, axis=1) for v in (states, acts, rewards))
    cut = lambda v: v.reshape(n_episodes * length // horizon, horizon, *v.shape[2:])  # noqa: E731
    episode = np.repeat(np.arange(n_episodes), length // horizon)
    return SegmentSet(cut(states), cut(acts), cut(rewards), episode, states=cut(states))


def _as_reward_fn(fn):
    return lambda obs, acts, next_obs, done: fn(obs, acts, next_obs)


def _distance(pool: SegmentSet, fn, seed: int = 0) -> float:
    config, rng = EpicConfig(transitions=300), np.random.default_rng(seed)
    coverage = sample_coverage(pool, np.arange(len(pool)), config, rng)
    truth = true_samples(coverage, _true_reward)
    return epic_to_true(coverage, truth, _as_reward_fn(fn), GAMMA)[0]


def test_the_true_reward_itself_is_at_distance_zero_and_its_negation_at_one():
    pool = _tiny_pool()
    assert _distance(pool, lambda o, a, n: _true_reward(o, a)) == pytest.approx(0.0, abs=1e-6)
    assert _distance(pool, lambda o, a, n: -_true_reward(o, a)) == pytest.approx(1.0)


def test_potential_shaping_and_rescaling_do_not_move_the_estimate():
    pool = _tiny_pool()

    def phi(x: np.ndarray) -> np.ndarray:
        return np.sin(3 * x[:, 0]) + 2 * x[:, 1] ** 2

    def shaped(o, a, n):
        return 2.0 * _true_reward(o, a) + GAMMA * phi(n) - phi(o) + 3.0

    assert _distance(pool, shaped) == pytest.approx(0.0, abs=1e-6)
    coverage = sample_coverage(pool, np.arange(len(pool)), EpicConfig(), np.random.default_rng(0))
    raw = learned_samples(coverage, _as_reward_fn(shaped)).at_transitions
    assert pearson_distance(raw, coverage.true_rewards) > 0.05  # so canonicalising did the work


def test_the_estimate_is_fixed_by_its_seed():
    pool = _tiny_pool()
    noisy = lambda o, a, n: _true_reward(o, a) + 0.05 * np.sin(7 * o[:, 0])  # noqa: E731
    first, again, other = (_distance(pool, noisy, seed) for seed in (5, 5, 6))
    assert first == again and 0.01 < first < 0.5
    assert other != first  # another draw of transitions and coverage samples


def test_coverage_comes_from_the_given_segments_only():
    pool = _tiny_pool()
    held_out = np.arange(10, 20)
    config = EpicConfig(transitions=50, actions=4)
    coverage = sample_coverage(pool, held_out, config, np.random.default_rng(0))
    allowed = pool.obs[held_out].reshape(-1, 2)
    for rows in (coverage.obs, coverage.sample_next_obs):
        assert all((np.abs(allowed - row).sum(1) == 0).any() for row in rows)
    # each transition is a step and the next step of one segment
    states = coverage.states
    next_states = _step(states[coverage.source], coverage.acts)[0]
    np.testing.assert_allclose(states[coverage.target], next_states, atol=1e-6)


def test_without_simulator_states_the_fallback_is_named():
    pool = _tiny_pool()
    pool = SegmentSet(pool.obs, pool.acts, pool.true_rewards, pool.episode_id)
    coverage = sample_coverage(pool, np.arange(len(pool)), EpicConfig(), np.random.default_rng(0))
    assert coverage.states is None
    with pytest.raises(ValueError, match="no simulator states"):
        true_samples(coverage, _true_reward)
    fn = lambda o, a, n: -_true_reward(o, a)  # noqa: E731
    distance, estimator = epic_to_true(coverage, None, _as_reward_fn(fn), GAMMA)
    assert estimator == FALLBACK and distance == pytest.approx(1.0)


def test_epic_config_refuses_bad_values():
    with pytest.raises(ValueError, match="epic gamma must be in"):
        EpicConfig(gamma=-0.1)
    with pytest.raises(ValueError, match="epic actions must be >= 1, got 0"):
        EpicConfig(actions=0)


# -- the true reward of a MuJoCo task, from restored simulator states ----------------------------
def _episodes(env_id: str, n: int, max_steps: int):
    env = make_env(env_id)
    low, high = env.action_space.low, env.action_space.high
    env.close()
    policy = random_policy(low, high, np.random.default_rng(0))
    return collect_episodes(
        env_id, policy, n, seed=0, n_envs=min(n, 2), max_steps=max_steps, record_states=True
    )


@pytest.mark.parametrize(
    ("env_id", "queries"), [("HalfCheetah-v5", 200), ("dmc/cartpole-balance", 1100)]
)
def test_the_simulator_gives_back_the_recorded_rewards(env_id, queries):
    episode = _episodes(env_id, 1, 40)[0]
    # more queries than dm_control's 1,000-step episodes: its step after the last one would be
    # a reset with no reward, so the simulator must start a new episode before that
    steps = np.arange(queries) % episode.length
    simulator = SimulatorReward(env_id)
    try:
        got = simulator(episode.states[steps], episode.acts[steps])
    finally:
        simulator.close()
    np.testing.assert_allclose(got, episode.rewards[steps], rtol=1e-5, atol=1e-6)
    # the rewards differ from step to step, so matching them means something
    assert np.ptp(episode.rewards) > 1e-3 * np.abs(episode.rewards).max()


# -- the fidelity benchmark's column -------------------------------------------------------------
def test_fidelity_runs_report_epic_beside_an_unchanged_tau(tmp_path):
    from ratingrl.experiments.fidelity import FidelityConfig, _Job, run_one, summarise
    from ratingrl.rewards.nets import RewardNetConfig
    from ratingrl.rewards.training import TrainerConfig

    spec = PoolSpec("HalfCheetah-v5", horizon=10, stride=10, max_episode_steps=100)
    path = pool_path(spec, tmp_path)
    save_segments(segment_episodes(_episodes(spec.env_id, 8, 100), 10), path, spec=spec.to_dict())
    config = FidelityConfig(
        env_id=spec.env_id,
        methods=("regression",),
        pool=spec,
        cache_dir=str(tmp_path),
        trainer=TrainerConfig(epochs=5, net=RewardNetConfig(hidden=(16,), ensemble_size=2)),
        epic=EpicConfig(transitions=200, actions=4),
    )
    job = _Job("regression", 40, 3, 0.0, 0)
    row, again = run_one(config, str(path), job), run_one(config, str(path), job)
    plain = run_one(replace(config, epic=None), str(path), job)
    assert row["epic_estimator"] == SIMULATOR and 0.0 <= row["epic"] <= 1.0
    assert row["epic_truth_s"] > 0 and again["epic_truth_s"] == 0.0  # the split's truth is reused
    assert again["epic"] == row["epic"]
    assert "epic" not in plain
    for metric in ("kendall_tau", "spearman", "label_accuracy"):
        assert plain[metric] == row[metric]  # EPIC draws from its own generator
    entry = summarise([row, again], ["regression"])[0]["results"]["regression"]
    assert entry["epic"]["mean"] == pytest.approx(row["epic"]) and entry["epic"]["n"] == 2
    assert entry["epic_estimator"] == SIMULATOR


def test_the_fidelity_table_shows_epic_beside_tau_and_names_a_fallback(capsys):
    from ratingrl.cli.bench import _print_fidelity

    def report(estimator):
        stat = {"mean": 0.25, "std": 0.01, "n": 3}
        entry = {m: stat for m in ("kendall_tau", "spearman", "label_accuracy", "epic")}
        entry.update(epic_estimator=estimator, wall_time_s=1.0)
        condition = {"ratings": 10, "classes": 4, "noise": 0.0, "results": {"r4": entry}}
        return {"config": {"env_id": "X-v0"}, "conditions": [condition]}

    _print_fidelity(report(SIMULATOR))
    out = capsys.readouterr().out
    assert "EPIC" in out and out.count("0.250 ± 0.010") == 3
    _print_fidelity(report(FALLBACK))
    assert "no sim" in capsys.readouterr().out


def test_epic_settings_travel_in_configs_and_sweep_tables():
    from ratingrl.experiments.fidelity import FidelityConfig
    from ratingrl.experiments.sweep import _fidelity_from_dict

    default = FidelityConfig(methods=("r4",))
    assert "epic" not in default.to_dict()  # configs stored before EPIC still compare equal
    assert _fidelity_from_dict(default.to_dict()).epic == EpicConfig()
    table = FidelityConfig(methods=("r4",), epic={"actions": 4})
    assert table.epic == EpicConfig(actions=4) and table.to_dict()["epic"]["actions"] == 4
    assert _fidelity_from_dict(table.to_dict()).epic == EpicConfig(actions=4)
    off = FidelityConfig(methods=("r4",), epic=None)
    assert _fidelity_from_dict(off.to_dict()).epic is None
    with pytest.raises(ValueError, match=r"unknown epic settings \['samples'\]"):
        FidelityConfig(methods=("r4",), epic={"samples": 4})
