"""EPIC distance between a learned reward and a task's true reward, on a pool's transitions.

The arithmetic is in :mod:`ratingrl.rewards.epic`; this module decides what to evaluate.

The learned reward is ``r(s, a)`` and can be evaluated on any observation and action. The true
reward of a MuJoCo task is not a function we can call: it is what the simulator returns for one
step. Pools record the simulator state of every step (``SegmentSet.states``), so the true
reward of any (state, action) is exact: restore the state, step once with the action, read the
reward (:class:`SimulatorReward`). That defines both rewards as functions of ``(s, a)`` (the
true one being the expected reward over the -- here deterministic -- next state), which is the
form EPIC compares them in; neither depends on the ``S'`` of the canonicalisation.

Samples (one seeded generator, never the benchmark's): ``D`` is ``transitions`` steps drawn
uniformly from the held-out segments (a step and the next one of the same segment); ``D_A`` is
``actions`` actions drawn from the held-out steps, ``D_S`` (for ``S'``) as many observations.
Both rewards are evaluated on the same samples, so the figure is the exact EPIC distance under
these empirical distributions (:class:`~ratingrl.rewards.epic.RewardSamples`).

Cost: ``2 * transitions * actions`` simulator steps (16,000 by default; about 2-3 s for
HalfCheetah-v5 on one loaded core), paid once per held-out split and reused by every method
scored on it; the learned reward's share is one batched forward pass (~0.1-0.2 s). Pools
without simulator states (tasks that are not MuJoCo) get the named fallback
``"pearson_uncanonicalised"``: the Pearson distance of the two rewards on D's transitions,
which is not invariant to shaping.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np

from ratingrl.feedback.segments import SegmentSet
from ratingrl.rewards.epic import RewardSamples, epic_from_samples, pearson_distance
from ratingrl.rewards.nets import RewardFn

__all__ = [
    "EpicConfig",
    "Coverage",
    "TrueReward",
    "SimulatorReward",
    "sample_coverage",
    "true_samples",
    "learned_samples",
    "epic_to_true",
    "score_epic",
    "SIMULATOR",
    "FALLBACK",
]

SIMULATOR = "simulator"
FALLBACK = "pearson_uncanonicalised"
_STREAM = 0xE91C  # EPIC's own random stream within a seed: the benchmark's draws stay as they were

TrueReward = Callable[[np.ndarray, np.ndarray], np.ndarray]
"""``(simulator states [B, state_dim], actions [B, act_dim]) -> rewards [B]``."""


@dataclass(frozen=True)
class EpicConfig:
    """How EPIC samples a pool; the defaults cost 16,000 simulator steps per held-out split."""

    gamma: float = field(
        default=0.99, metadata={"help": "discount of the canonical shaping (tasks define none)"}
    )
    transitions: int = field(default=1000, metadata={"help": "held-out transitions in D"})
    actions: int = field(default=8, metadata={"help": "coverage samples (A, S') per state"})

    def __post_init__(self) -> None:
        if not 0.0 <= self.gamma <= 1.0:
            raise ValueError(f"epic gamma must be in [0, 1], got {self.gamma}")
        for name in ("transitions", "actions"):
            if getattr(self, name) < 1:
                raise ValueError(f"epic {name} must be >= 1, got {getattr(self, name)}")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> EpicConfig:
        """From a table (a sweep's ``[base.epic]``, a stored config); unknown keys are named."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown epic settings {unknown}; known: {sorted(known)}")
        return cls(**data)


@dataclass(frozen=True)
class Coverage:
    """The samples EPIC evaluates both rewards on.

    ``obs[k]`` (and ``states[k]``, the simulator state, when the pool has them) are the K states
    visited; transition i goes from row ``source[i]`` to row ``target[i]`` with action
    ``acts[i]`` and stored true reward ``true_rewards[i]``. ``sample_acts`` and
    ``sample_next_obs`` are the M coverage samples ``(A_j, S'_j)``.
    """

    obs: np.ndarray
    states: np.ndarray | None
    source: np.ndarray
    target: np.ndarray
    acts: np.ndarray
    true_rewards: np.ndarray
    sample_acts: np.ndarray
    sample_next_obs: np.ndarray


def sample_coverage(
    segments: SegmentSet, indices: np.ndarray, config: EpicConfig, rng: np.random.Generator
) -> Coverage:
    """Draw D (transitions within segments), D_A and D_S from the segments at ``indices``."""
    if segments.true_rewards is None:
        raise ValueError("EPIC to the true reward needs segments with true_rewards")
    if segments.horizon < 2:
        raise ValueError(f"EPIC needs segments of at least 2 steps, got horizon {segments.horizon}")
    indices = np.asarray(indices, dtype=np.int64)
    if indices.size == 0:
        raise ValueError("EPIC needs at least one segment to sample, got none")
    n, m = config.transitions, config.actions
    seg = rng.choice(indices, n)
    step = rng.integers(0, segments.horizon - 1, n)
    seg_a, seg_s = rng.choice(indices, (2, m))
    t_a, t_s = rng.integers(0, segments.horizon, (2, m))
    both = (np.concatenate([seg, seg]), np.concatenate([step, step + 1]))  # s_i, then s'_i
    return Coverage(
        obs=segments.obs[both],
        states=None if segments.states is None else segments.states[both],
        source=np.arange(n),
        target=np.arange(n, 2 * n),
        acts=segments.acts[seg, step],
        true_rewards=segments.true_rewards[seg, step],
        sample_acts=segments.acts[seg_a, t_a],
        sample_next_obs=segments.obs[seg_s, t_s],
    )


class SimulatorReward:
    """The true reward of a MuJoCo task (Gymnasium or DeepMind Control) at any state and action.

    Restores the state with :func:`~ratingrl.feedback.envs.set_physics_state` and steps the
    unwrapped env once, so no time limit counts the queries. dm_control still counts steps and
    ends an episode after its limit (its next step would be a reset with no reward), so the env
    is reset after any step that ends one.
    """

    def __init__(self, env_id: str) -> None:
        from ratingrl.feedback.envs import make_env, set_physics_state  # MuJoCo only when used

        self.env = make_env(env_id)
        self.env.reset(seed=0)
        self._raw = self.env.unwrapped
        self._set_state = set_physics_state

    def __call__(self, states: np.ndarray, acts: np.ndarray) -> np.ndarray:
        """Rewards ``[B]`` of stepping from each state ``[B, state_dim]`` with each action."""
        out = np.empty(len(states))
        for i, (state, act) in enumerate(zip(states, acts, strict=True)):
            self._set_state(self.env, state)
            _, reward, terminated, truncated, _ = self._raw.step(act)
            out[i] = reward
            if terminated or truncated:
                self._raw.reset()
        return out

    def close(self) -> None:
        self.env.close()


def true_samples(coverage: Coverage, reward: TrueReward) -> RewardSamples:
    """The true reward on the coverage: stored at D's transitions, from the simulator elsewhere."""
    if coverage.states is None:
        raise ValueError("these segments carry no simulator states to query the true reward at")
    k, m = len(coverage.obs), len(coverage.sample_acts)
    grid = reward(
        np.repeat(coverage.states, m, axis=0), np.tile(coverage.sample_acts, (k, 1))
    ).reshape(k, m)
    return RewardSamples(coverage.true_rewards, grid[coverage.source], grid[coverage.target])


def learned_samples(coverage: Coverage, reward_fn: RewardFn) -> RewardSamples:
    """A reward given as ``(state, action, next_state, done) -> rewards`` on the coverage."""
    k, m = len(coverage.obs), len(coverage.sample_acts)
    obs = coverage.obs
    at = reward_fn(
        obs[coverage.source], coverage.acts, obs[coverage.target], np.zeros(len(coverage.source))
    )
    grid = reward_fn(
        np.repeat(obs, m, axis=0),
        np.tile(coverage.sample_acts, (k, 1)),
        np.tile(coverage.sample_next_obs, (k, 1)),
        np.zeros(k * m),
    )
    grid = np.asarray(grid, dtype=np.float64).reshape(k, m)
    return RewardSamples(np.asarray(at), grid[coverage.source], grid[coverage.target])


def epic_to_true(
    coverage: Coverage, truth: RewardSamples | None, reward_fn: RewardFn, gamma: float
) -> tuple[float, str]:
    """(distance, estimator): EPIC when ``truth`` came from the simulator, else the fallback."""
    learned = learned_samples(coverage, reward_fn)
    if truth is None:
        return pearson_distance(learned.at_transitions, coverage.true_rewards), FALLBACK
    return epic_from_samples(truth, learned, gamma), SIMULATOR


# -- the fidelity benchmark's column ----------------------------------------------------------
@dataclass(frozen=True)
class _Split:
    """One held-out split of one pool: what the true side of EPIC depends on (hashable)."""

    env_id: str
    pool_file: str
    held_out: bytes
    seed: int
    config: EpicConfig
    segments: SegmentSet = field(compare=False, hash=False, repr=False)


@functools.lru_cache(maxsize=4)
def _true_side(split: _Split) -> tuple[Coverage, RewardSamples | None, float]:
    """Coverage and true reward of a split, computed once per process and reused per method."""
    start = time.perf_counter()
    held_out = np.frombuffer(split.held_out, dtype=np.int64)
    rng = np.random.default_rng([split.seed, _STREAM])
    coverage = sample_coverage(split.segments, held_out, split.config, rng)
    truth = None
    if coverage.states is not None:
        simulator = SimulatorReward(split.env_id)
        try:
            truth = true_samples(coverage, simulator)
        finally:
            simulator.close()
    return coverage, truth, time.perf_counter() - start


def score_epic(
    config: EpicConfig,
    env_id: str,
    pool_file: str,
    segments: SegmentSet,
    held_out: np.ndarray,
    seed: int,
    reward_fn: RewardFn,
) -> dict:
    """A fidelity run's EPIC fields: ``epic``, ``epic_estimator``, ``epic_time_s`` (this run's
    cost, with ``epic_truth_s`` of it spent querying the simulator: 0 when the split's true
    side was already computed in this process)."""
    start = time.perf_counter()
    held_out = np.ascontiguousarray(held_out, dtype=np.int64)
    split = _Split(env_id, pool_file, held_out.tobytes(), seed, config, segments)
    hits = _true_side.cache_info().hits
    coverage, truth, truth_s = _true_side(split)
    distance, estimator = epic_to_true(coverage, truth, reward_fn, config.gamma)
    return {
        "epic": distance,
        "epic_estimator": estimator,
        "epic_time_s": time.perf_counter() - start,
        "epic_truth_s": 0.0 if _true_side.cache_info().hits > hits else truth_s,
    }
