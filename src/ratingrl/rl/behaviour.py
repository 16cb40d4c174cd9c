"""Behaviour of every quality level: snapshots of a PPO learner, each also run with noise.

This builds the segment pools that benchmarks rate. The learner trains on the environment's
own reward; that is fine here because the pool only needs *varied* behaviour (from flailing to
competent), and the teachers, not the learner, decide what is good.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from stable_baselines3 import PPO
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.policies import BasePolicy

from ratingrl.feedback.envs import has_physics_state, make_env
from ratingrl.feedback.pool import PoolSpec, collect_level
from ratingrl.feedback.rollouts import PolicyFn, noisy_policy, segment_episodes
from ratingrl.feedback.segments import SegmentSet
from ratingrl.progress import progress_bar

__all__ = ["sb3_policy_fn", "ppo_snapshots", "build_pool"]


class _Advance(BaseCallback):
    def __init__(self, advance: Callable[[int], None]) -> None:
        super().__init__()
        self._advance = advance

    def _on_step(self) -> bool:
        self._advance(self.training_env.num_envs)
        return True


def sb3_policy_fn(model: BaseAlgorithm | BasePolicy, deterministic: bool = True) -> PolicyFn:
    """A frozen copy of an SB3 model's (or policy's) policy as a batch ``obs -> action`` function.

    The copy is what makes snapshots possible: the learner keeps training, the function keeps
    acting as the policy did when it was taken. Use it to collect rollouts from any SB3 model.
    """
    policy = model.policy if isinstance(model, BaseAlgorithm) else model
    frozen = type(policy)(**policy._get_constructor_parameters())
    frozen.load_state_dict(policy.state_dict())
    frozen.set_training_mode(False)
    return lambda obs: frozen.predict(obs, deterministic=deterministic)[0]


def ppo_snapshots(
    env_id: str,
    steps: tuple[int, ...],
    seed: int,
    on_step: Callable[[int], None] | None = None,
) -> list[tuple[int, PolicyFn]]:
    """Train PPO on ``env_id`` and return its deterministic policy after each of ``steps``."""
    env = make_vec_env(lambda: make_env(env_id), n_envs=1, seed=seed)
    model = PPO("MlpPolicy", env, seed=seed, device="cpu", verbose=0)
    callback = _Advance(on_step) if on_step else None
    snapshots, done = [], 0
    for target in steps:
        if target > done:
            model.learn(target - done, callback=callback, reset_num_timesteps=False)
            done = target
        snapshots.append((target, sb3_policy_fn(model)))
    env.close()
    return snapshots


def build_pool(spec: PoolSpec, progress: bool = True) -> SegmentSet:
    """Roll out every (snapshot, noise level) of ``spec`` until each gives its segments
    (:func:`~ratingrl.feedback.pool.collect_level`) and cut the episodes into segments."""
    probe = make_env(spec.env_id)
    low, high = probe.action_space.low, probe.action_space.high
    record_states = has_physics_state(probe)  # the rating app replays them (DMC obs lack it)
    probe.close()
    runs = len(spec.train_steps) * len(spec.action_noise)
    per_level = spec.episodes_per_policy * spec.max_episode_steps
    episodes, info, levels = [], {}, {}
    # env steps so far, those of the finished levels, and a guess at the whole (the bar's total)
    count = {"steps": 0, "levels": 0, "expected": runs * per_level}
    with progress_bar(progress) as bar:
        train = bar.add_task(f"PPO behaviour on {spec.env_id}", total=max(spec.train_steps))
        roll = bar.add_task("rollouts", total=runs * per_level)

        def stepped(k: int) -> None:  # the total stays ahead of a level that takes long
            count["steps"] += k
            bar.update(roll, advance=k, total=max(count["steps"] + per_level, count["expected"]))

        snapshots = ppo_snapshots(
            spec.env_id, spec.train_steps, spec.seed, lambda k: bar.advance(train, k)
        )
        for stage, (steps, policy) in enumerate(snapshots):
            for n, sigma in enumerate(spec.action_noise):
                run = stage * len(spec.action_noise) + n
                rng = np.random.default_rng([spec.seed, run])
                name = f"ppo{steps}+noise{sigma:g}"
                level = collect_level(  # until it gives its segments (falls: more episodes)
                    spec,
                    noisy_policy(policy, sigma, low, high, rng),
                    name,
                    run,
                    first_episode_id=len(episodes),
                    on_step=stepped,
                    record_states=record_states,
                )
                episodes.extend(level.episodes)
                levels[name] = level.summary()
                count["levels"] += level.steps
                count["expected"] = count["levels"] + (runs - run - 1) * per_level
                mean = np.mean([e.total_return for e in level.episodes])
                bar.update(roll, status=f"{name}: {level.episodes_run} episodes, return {mean:.0f}")
        bar.update(roll, total=count["steps"], completed=count["steps"])
    info["episodes"] = {
        str(e.episode_id): {"policy": e.policy, "return": e.total_return} for e in episodes
    }
    info["levels"] = levels
    segments = segment_episodes(episodes, spec.horizon, spec.stride)
    return SegmentSet(
        segments.obs,
        segments.acts,
        segments.true_rewards,
        segments.episode_id,
        segments.start,
        info,
        segments.states,
    )
