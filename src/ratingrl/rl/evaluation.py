"""Evaluation episodes: the true return (for measurement only) and the learned return.

Evaluation runs on its own environments with fixed seeds and the deterministic policy, so
successive evaluations differ only by the policy. The true return never reaches the learner;
the learned return says what the policy is optimising.
"""

from __future__ import annotations

import csv
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

import numpy as np
from scipy import stats
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.logger import Logger

from ratingrl.feedback.rollouts import Episode, collect_episodes
from ratingrl.rl.reward_wrapper import EpisodeRecorder, StepRewardFn

__all__ = [
    "evaluate",
    "evaluate_episodes",
    "return_stats",
    "PeriodicEvaluation",
    "log_evaluation",
    "LearnedEpisodeReturns",
    "eval_curve",
]


def evaluate(
    algo: BaseAlgorithm,
    env_id: str,
    n_episodes: int,
    seed: int,
    reward_fn: StepRewardFn | None = None,
    max_steps: int | None = None,
) -> dict:
    """Mean and std of the true (and, with ``reward_fn``, learned) return over episodes."""
    return evaluate_episodes(algo, env_id, n_episodes, seed, reward_fn, max_steps)[0]


def evaluate_episodes(
    algo: BaseAlgorithm,
    env_id: str,
    n_episodes: int,
    seed: int,
    reward_fn: StepRewardFn | None = None,
    max_steps: int | None = None,
    record_states: bool = False,
) -> tuple[dict, list[Episode]]:
    """:func:`evaluate`'s result and the episodes it measured, e.g. to show one as a clip
    (``record_states`` keeps each step's simulator state, so the clip replays the robot)."""

    def policy(obs: np.ndarray) -> np.ndarray:
        return algo.predict(obs, deterministic=True)[0]

    episodes = collect_episodes(
        env_id,
        policy,
        n_episodes,
        seed,
        n_envs=n_episodes,
        max_steps=max_steps,
        record_states=record_states,
    )
    true = np.array([ep.total_return for ep in episodes])
    out = {
        "true_return": return_stats(true),
        "learned_return": None,
        "episode_length": float(np.mean([ep.length for ep in episodes])),
    }
    if reward_fn is not None:
        learned = np.array([float(np.sum(reward_fn(ep.obs, ep.acts))) for ep in episodes])
        out["learned_return"] = return_stats(learned)
    return out, episodes


def return_stats(returns: np.ndarray) -> dict:
    """Mean, std, each episode's return and a 95% t-interval of the mean.

    Evaluation returns of one policy spread widely (a walker that falls scores a third of one
    that does not), so one mean over five episodes can differ from the next by more than two
    methods do; the interval says how far the mean itself can be trusted.
    """
    n = returns.size
    mean = float(returns.mean())
    interval = None  # one episode: no interval (and summary.json stays strict JSON)
    if n > 1:
        half = float(stats.t.ppf(0.975, n - 1) * returns.std(ddof=1) / np.sqrt(n))
        interval = [mean - half, mean + half]
    return {
        "mean": mean,
        "std": float(returns.std()),
        "ci95": interval,
        "episodes": [float(r) for r in returns],
    }


class PeriodicEvaluation(BaseCallback):
    """Evaluate every ``every`` env steps; results go to ``history`` and ``eval/`` in the logger.

    ``reward_fn`` is a getter because the online loop replaces the reward model as it learns.
    ``on_result`` (optional) is told each result once it is in ``history``.
    """

    def __init__(
        self,
        evaluate_fn: Callable[[BaseAlgorithm, StepRewardFn | None], dict],
        every: int,
        reward_fn: Callable[[], StepRewardFn | None],
        history: list[dict] | None = None,
        on_result: Callable[[dict], None] | None = None,
    ) -> None:
        super().__init__()
        self.on_result = on_result
        self.evaluate_fn, self.every, self.reward_fn = evaluate_fn, every, reward_fn
        self.history = history if history is not None else []
        self.seconds = 0.0
        self.cpu_seconds = 0.0  # process CPU time: what overhead ratios use on a shared machine
        last = self.history[-1]["env_steps"] if self.history else 0
        self._next = (last // every + 1) * every

    def _on_step(self) -> bool:
        if self.num_timesteps >= self._next:
            self.run()
            self._next = (self.num_timesteps // self.every + 1) * self.every
        return True

    def run(self) -> dict:
        started, cpu = time.perf_counter(), time.process_time()
        result = self.evaluate_fn(self.model, self.reward_fn())
        result["env_steps"] = int(self.num_timesteps)
        self.history.append(result)
        self.seconds += time.perf_counter() - started
        self.cpu_seconds += time.process_time() - cpu
        log_evaluation(self.logger, result)
        if self.on_result is not None:
            self.on_result(result)
        return result


def log_evaluation(logger: Logger, result: dict) -> None:
    """One evaluation as a row of ``eval/`` columns (CSV and TensorBoard), at its env step."""
    logger.record("eval/env_steps", result["env_steps"])
    logger.record("eval/true_return", result["true_return"]["mean"])
    logger.record("eval/true_return_std", result["true_return"]["std"])
    if result["learned_return"] is not None:
        logger.record("eval/learned_return", result["learned_return"]["mean"])
    logger.record("eval/episode_length", result["episode_length"])
    logger.dump(result["env_steps"])


class LearnedEpisodeReturns(BaseCallback):
    """``rollout/ep_learned_rew_mean``: the learned return of finished training episodes.

    SB3's ``rollout/ep_rew_mean`` comes from the ``Monitor`` below the reward wrapper, so it is
    the *environment's* return; this is the other half of the picture -- what the learner is
    being paid. Each episode is scored once, when it ends, by the reward model in force then
    (PPO's deferred scoring and SAC's relabelling make the reward the learner trains on the
    current model's anyway). Scoring is one batched forward pass per finished episode, taken from
    the :class:`EpisodeRecorder` the online loop already keeps; the mean is over the last
    ``window`` episodes, like SB3's.
    """

    def __init__(
        self,
        recorder: EpisodeRecorder,
        reward_fn: Callable[[], StepRewardFn | None],
        window: int = 100,
    ) -> None:
        super().__init__()
        self.recorder, self.reward_fn = recorder, reward_fn
        self.returns: deque[float] = deque(maxlen=window)
        self._seen = recorder.next_id

    def _on_step(self) -> bool:
        return True

    def _on_rollout_end(self) -> None:
        if self.recorder.next_id == self._seen:
            return
        fn = self.reward_fn()
        new = [ep for ep in self.recorder.episodes if ep.episode_id >= self._seen]
        self._seen = self.recorder.next_id
        if fn is None:
            return
        for ep in new:
            self.returns.append(float(np.sum(fn(ep.obs, ep.acts))))
        if self.returns:
            self.logger.record("rollout/ep_learned_rew_mean", float(np.mean(self.returns)))


def eval_curve(run_dir: str | Path) -> dict[str, np.ndarray]:
    """The evaluations of a run, read back from its ``progress*.csv`` files (resumes included).

    Returns ``env_steps``, ``true_return`` and ``learned_return`` (NaN where there was no
    learned reward yet), sorted by step, one entry per evaluation.
    """
    rows: dict[int, tuple[float, float]] = {}
    for path in sorted(Path(run_dir).glob("progress*.csv")):
        with open(path, newline="") as f:
            for row in csv.DictReader(f):
                if not row.get("eval/true_return") or not row.get("eval/env_steps"):
                    continue
                learned = row.get("eval/learned_return") or "nan"
                rows[int(float(row["eval/env_steps"]))] = (
                    float(row["eval/true_return"]),
                    float(learned),
                )
    steps = np.array(sorted(rows), dtype=np.int64)
    return {
        "env_steps": steps,
        "true_return": np.array([rows[s][0] for s in steps]),
        "learned_return": np.array([rows[s][1] for s in steps]),
    }
