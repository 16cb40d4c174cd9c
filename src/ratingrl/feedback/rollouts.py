"""Collect whole episodes from any policy, and cut them into fixed-length segments.

A policy here is just a function from a batch of observations to a batch of actions, so a
random policy, a noisy copy of a trained one, an SB3 model or a person's controller all fit.
Episodes are run one at a time per environment copy, never through an auto-resetting vector
env: every stored step is a real (observation, action, reward) of one episode, and no reset
step can leak into a segment.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np

from ratingrl.feedback.envs import get_physics_state, make_env
from ratingrl.feedback.segments import FeedbackError, SegmentSet

__all__ = [
    "PolicyFn",
    "Episode",
    "random_policy",
    "noisy_policy",
    "collect_episodes",
    "segment_episodes",
]

PolicyFn = Callable[[np.ndarray], np.ndarray]
"""Batch of observations ``[B, obs_dim]`` -> batch of actions ``[B, act_dim]``."""


@dataclass(frozen=True)
class Episode:
    """One episode: ``obs[t]`` is the observation on which ``acts[t]`` was taken, for reward t.

    ``states[t]`` (when recorded) is the simulator state in which ``obs[t]`` was observed.
    """

    obs: np.ndarray
    acts: np.ndarray
    rewards: np.ndarray
    episode_id: int
    policy: str = ""
    states: np.ndarray | None = None

    @property
    def length(self) -> int:
        return len(self.rewards)

    @property
    def total_return(self) -> float:
        return float(self.rewards.sum())


def random_policy(low: np.ndarray, high: np.ndarray, rng: np.random.Generator) -> PolicyFn:
    """Uniform random actions in the box ``[low, high]``."""
    low, high = np.asarray(low, np.float64), np.asarray(high, np.float64)
    return lambda obs: rng.uniform(low, high, size=(len(obs), len(low)))


def noisy_policy(
    policy: PolicyFn, sigma: float, low: np.ndarray, high: np.ndarray, rng: np.random.Generator
) -> PolicyFn:
    """``policy`` plus Gaussian action noise of std ``sigma * (high - low) / 2``, clipped.

    Noise relative to the action range makes one ``sigma`` mean the same in every task.
    """
    if sigma == 0:
        return policy
    half_range = (np.asarray(high) - np.asarray(low)) / 2.0

    def act(obs: np.ndarray) -> np.ndarray:
        actions = np.asarray(policy(obs), dtype=np.float64)
        actions = actions + rng.normal(0.0, sigma, size=actions.shape) * half_range
        return np.clip(actions, low, high)

    return act


def collect_episodes(
    env_id: str,
    policy: PolicyFn,
    n_episodes: int,
    seed: int,
    *,
    n_envs: int = 8,
    max_steps: int | None = None,
    policy_name: str = "",
    first_episode_id: int = 0,
    on_step: Callable[[int], None] | None = None,
    record_states: bool = False,
) -> list[Episode]:
    """Run ``n_episodes`` full episodes of ``policy`` on ``n_envs`` copies of ``env_id``.

    The policy is called once per step on the batch of running copies (cheap for neural
    policies). ``max_steps`` truncates long episodes. ``on_step(k)`` reports k new env steps
    (for progress bars). Episode ``i`` is reset with seed ``seed + i``: reproducible whatever
    ``n_envs`` is. ``record_states`` also stores the simulator state of every step (see
    :func:`~ratingrl.feedback.envs.get_physics_state`), so clips can show the real robot.
    """
    if n_episodes < 1:
        raise FeedbackError(f"n_episodes must be >= 1, got {n_episodes}")
    envs = [make_env(env_id) for _ in range(min(n_envs, n_episodes))]
    try:
        return _run(
            envs,
            policy,
            n_episodes,
            seed,
            max_steps,
            policy_name,
            first_episode_id,
            on_step,
            record_states,
        )
    finally:
        for env in envs:
            env.close()


def _run(envs, policy, n_episodes, seed, max_steps, policy_name, first_id, on_step, states):
    episodes: list[Episode] = []
    started = 0
    slots: list[dict | None] = [None] * len(envs)

    def start(slot: int) -> None:
        nonlocal started
        obs, _ = envs[slot].reset(seed=seed + started)
        slots[slot] = {"id": first_id + started, "obs": [obs], "acts": [], "rewards": []}
        if states:
            slots[slot]["states"] = [get_physics_state(envs[slot])]
        started += 1

    for slot in range(len(envs)):
        start(slot)
    while any(s is not None for s in slots):
        live = [i for i, s in enumerate(slots) if s is not None]
        actions = np.asarray(policy(np.stack([slots[i]["obs"][-1] for i in live])))
        for i, action in zip(live, actions, strict=True):
            record = slots[i]
            obs, reward, terminated, truncated, _ = envs[i].step(action)
            record["acts"].append(action)
            record["rewards"].append(reward)
            length = len(record["rewards"])
            if terminated or truncated or (max_steps is not None and length >= max_steps):
                episodes.append(_finish(record, policy_name))
                slots[i] = None
                if started < n_episodes:
                    start(i)
            else:
                record["obs"].append(obs)
                if states:  # the state obs was observed in, before the next action
                    record["states"].append(get_physics_state(envs[i]))
        if on_step is not None:
            on_step(len(live))
    episodes.sort(key=lambda e: e.episode_id)
    return episodes


def _finish(record: dict, policy_name: str) -> Episode:
    return Episode(
        np.asarray(record["obs"], np.float32),
        np.asarray(record["acts"], np.float32),
        np.asarray(record["rewards"], np.float32),
        record["id"],
        policy_name,
        np.asarray(record["states"], np.float64) if "states" in record else None,
    )


def segment_episodes(
    episodes: Iterable[Episode], horizon: int, stride: int | None = None
) -> SegmentSet:
    """Cut episodes into windows of ``horizon`` steps every ``stride`` steps (default: no overlap).

    Episodes shorter than ``horizon`` give no segment. Simulator states are cut alongside
    when every episode has them (a mix would leave holes, so then none are kept).
    """
    stride = stride or horizon
    if horizon < 1 or stride < 1:
        raise FeedbackError(f"horizon and stride must be >= 1, got {horizon}, {stride}")
    episodes = list(episodes)
    keep_states = bool(episodes) and all(ep.states is not None for ep in episodes)
    obs, acts, rewards, ids, starts, states = [], [], [], [], [], []
    for ep in episodes:
        for s in range(0, ep.length - horizon + 1, stride):
            obs.append(ep.obs[s : s + horizon])
            acts.append(ep.acts[s : s + horizon])
            rewards.append(ep.rewards[s : s + horizon])
            ids.append(ep.episode_id)
            starts.append(s)
            if keep_states:
                states.append(ep.states[s : s + horizon])
    if not obs:
        raise FeedbackError(f"no episode is at least horizon={horizon} steps long")
    return SegmentSet(
        np.stack(obs),
        np.stack(acts),
        np.stack(rewards),
        np.array(ids),
        np.array(starts),
        states=np.stack(states) if keep_states else None,
    )
