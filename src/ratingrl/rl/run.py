"""A training run as an object: build it, learn, checkpoint, resume, summarise.

    run = Run.create(config, "runs/r4")        # checks everything, then writes config.json
    summary = run.learn()                       # trains, evaluates, checkpoints; summary.json
    run = Run.resume("runs/r4")                 # after any stop, kill -9 included

Read top to bottom: :meth:`Run.create` / :meth:`Run.resume` check the configuration, the
environment and any dataset before a file is written; ``__init__`` builds the parts (feedback
channels, environments with the learned-reward wrapper, the reward model, the SB3 or SBX algorithm,
the online loop) and puts each back to its checkpointed state; :meth:`Run.learn` trains the
policy with periodic evaluation and checkpoints and writes ``summary.json``.

A run folder holds ``config.json``, ``feedback.parquet`` (online labels, written as they
arrive), ``feedback_pairs.parquet`` (pairs asked for besides ratings, with
``preference_budget``), ``reward_model.pt``, ``checkpoint/`` (the resume point),
``policy.zip``, ``progress*.csv`` (one per start), ``tb/`` and ``summary.json``.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import numpy as np
from stable_baselines3.common.callbacks import CallbackList
from stable_baselines3.common.env_util import make_vec_env

from ratingrl.feedback.io import atomic_write_bytes
from ratingrl.feedback.segments import PreferencePairs, RatedSegments
from ratingrl.feedback.sources import FeedbackSource
from ratingrl.progress import progress_bar
from ratingrl.rewards.nets import RewardEnsemble
from ratingrl.rl import builders
from ratingrl.rl.backends import algorithm_rng_state, set_algorithm_rng_state
from ratingrl.rl.checkpoint import (
    find_checkpoint,
    load_state,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from ratingrl.rl.config import RunConfig
from ratingrl.rl.entropy import StateEntropyReward
from ratingrl.rl.evaluation import (
    LearnedEpisodeReturns,
    PeriodicEvaluation,
    evaluate_episodes,
    log_evaluation,
)
from ratingrl.rl.monitor import TrainingMonitor
from ratingrl.rl.online import OnlineFeedback, RewardUpdater
from ratingrl.rl.relabel import PPORolloutScorer
from ratingrl.rl.reporting import RunReport, RunReporter
from ratingrl.rl.reward_wrapper import EpisodeRecorder, LearnedRewardVecEnv, zero_reward
from ratingrl.rl.state import RunState, RunTiming
from ratingrl.rl.validation import RunError

__all__ = ["Run"]


def _new_run_dir(run_dir: Path, overwrite: bool) -> None:
    if run_dir.exists() and any(run_dir.iterdir()):
        if not overwrite:
            raise RunError(f"{run_dir} is not empty; pass --resume to continue or --overwrite")
        if not (run_dir / "config.json").exists():
            raise RunError(f"{run_dir} is not a ratingrl run folder: refusing to delete it")
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)


def _stored_config(run_dir: Path, expected: RunConfig | None) -> RunConfig:
    """The configuration a run folder was started with; ``expected`` must equal it."""
    if not (run_dir / "config.json").exists():
        raise RunError(f"{run_dir} is not a run folder (no config.json) to resume")
    stored = RunConfig.load(run_dir / "config.json")
    if expected is not None:
        old, new = stored.to_dict(), expected.to_dict()
        differ = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
        if differ:
            detail = ", ".join(f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in differ)
            raise RunError(f"{run_dir} was run with another configuration ({detail})")
    return stored


class Run:
    """One training run in one folder; build it with :meth:`create` or :meth:`resume`.

    ``source`` replaces the simulated teacher of online runs (e.g. the rating app's source),
    ``pair_source`` the simulated preference teacher that answers the pairs of
    ``preference_budget`` (people's ratings mix only with people's pairs, so a ``source`` of
    one's own with pairs needs both). ``updater`` replaces how the reward is retrained online
    (default :func:`~ratingrl.rl.builders.make_updater`). ``progress`` shows progress.
    ``reporter`` is told the run's progress (:mod:`ratingrl.rl.reporting`), on a thread of
    its own: a reporter that fails or hangs never stops or slows training.
    """

    def __init__(
        self,
        config: RunConfig,
        run_dir: Path,
        inputs: builders.RunInputs,
        *,
        resumed: bool,
        updater: RewardUpdater | None = None,
        progress: bool = True,
        reporter: RunReporter | None = None,
    ) -> None:
        self.config, self.run_dir, self.progress = config, run_dir, progress
        self.report = None if reporter is None else RunReport(reporter, config.env_id)
        self._inputs = inputs
        checkpoint = find_checkpoint(run_dir) if resumed else None
        state = RunState.from_dict(load_state(checkpoint)) if checkpoint else RunState()
        self.channels = self._build_channels(state, resumed)
        self._build_env(state)
        self.reward_log: dict = {}
        model = self._build_reward(checkpoint)
        self._build_algorithm(checkpoint, state)
        self.starts = state.starts + (1 if resumed else 0)
        self.algo.set_logger(builders.make_logger(run_dir, self.starts))
        self.history: list[dict] = list(state.evaluations)
        self._timing_before, self._wall_before = state.timing, state.wall_time_s
        self.query_rng = np.random.default_rng(config.seed + 2)
        if state.query_rng is not None:
            self.query_rng.bit_generator.state = state.query_rng
        self.loop = self._build_loop(model, state, updater)
        self._static_model = model if self.loop is None else None
        told = None if self.report is None else self.report.evaluated
        self.evaluator = PeriodicEvaluation(
            self._evaluate, config.eval_every, self.current_reward, self.history, told
        )
        self._frozen_timing: RunTiming | None = None
        self._started = self._learn_start = time.perf_counter()
        self._learn_cpu = time.process_time()
        self._start_steps = int(self.algo.num_timesteps)

    # -- construction ------------------------------------------------------------------------
    @classmethod
    def create(
        cls,
        config: RunConfig,
        run_dir: str | Path,
        *,
        source: FeedbackSource | None = None,
        pair_source: FeedbackSource | None = None,
        updater: RewardUpdater | None = None,
        overwrite: bool = False,
        progress: bool = True,
        reporter: RunReporter | None = None,
    ) -> Run:
        """A new run in ``run_dir`` (empty, or an old run folder with ``overwrite``)."""
        run_dir = Path(run_dir)
        inputs = builders.run_inputs(config, source, pair_source)
        _new_run_dir(run_dir, overwrite)
        config.save(run_dir / "config.json")
        parts = {"updater": updater, "progress": progress, "reporter": reporter}
        return cls(config, run_dir, inputs, resumed=False, **parts)

    @classmethod
    def resume(
        cls,
        run_dir: str | Path,
        *,
        config: RunConfig | None = None,
        source: FeedbackSource | None = None,
        pair_source: FeedbackSource | None = None,
        updater: RewardUpdater | None = None,
        progress: bool = True,
        reporter: RunReporter | None = None,
    ) -> Run:
        """The run in ``run_dir``, continued from its last checkpoint with every label kept.

        Its ``config.json`` of any version is read (fields added since it was written are
        filled with what that run used); ``config``, if given, must be the same configuration.
        """
        run_dir = Path(run_dir)
        config = _stored_config(run_dir, config)
        inputs = builders.run_inputs(config, source, pair_source)
        parts = {"updater": updater, "progress": progress, "reporter": reporter}
        return cls(config, run_dir, inputs, resumed=True, **parts)

    def _build_channels(self, state: RunState, resumed: bool) -> list:
        if not self.config.online:
            return []
        inputs = self._inputs
        assert inputs.source is not None and inputs.schedule is not None
        channels = builders.make_channels(
            self.config, inputs.source, inputs.schedule, self.run_dir, inputs.pair_source
        )
        for channel, saved in zip(channels, state.sources, strict=False):
            channel.source.load_state_dict(saved)
        for channel in channels if resumed else ():  # labels may be newer than the checkpoint
            channel.source.resumed(len(channel.store))
        return channels

    def _build_env(self, state: RunState) -> None:
        config = self.config
        record = builders.records_states(config, self.channels)
        factory = builders.make_env_factory(config, record)
        venv = make_vec_env(factory, config.n_envs, seed=config.seed + state.starts)
        self.recorder = EpisodeRecorder(
            config.n_envs, config.candidate_episodes, record_states=record
        )
        if state.recorder is not None:
            self.recorder.load_state_dict(state.recorder)
        reward = None if config.method == "oracle" else zero_reward
        self.reward_env = LearnedRewardVecEnv(
            venv, reward, recorder=self.recorder, defer=config.algo == "ppo"
        )

    def _build_reward(self, checkpoint: Path | None) -> RewardEnsemble | None:
        """The checkpoint's reward model, or an offline run's learned now, or none yet."""
        inputs, model = self._inputs, None
        if checkpoint is not None and (checkpoint / "reward_model.pt").exists():
            model, _ = RewardEnsemble.load(checkpoint / "reward_model.pt")
        elif inputs.rated is not None or inputs.pairs is not None:
            model, self.reward_log = builders.train_offline_reward(
                self.config, inputs.rated, inputs.pairs
            )
            model.save(self.run_dir / "reward_model.pt", **self.reward_log)
        if model is not None:
            self.reward_env.reward_fn = model.predict_rewards
        elif self.config.online and self.config.pretrain_steps > 0:
            self.reward_env.reward_fn = StateEntropyReward(inputs.dims[0])
        return model

    def _build_algorithm(self, checkpoint: Path | None, state: RunState) -> None:
        if checkpoint is None:
            self.algo = builders.make_algorithm(self.config, self.reward_env)
            return
        self.algo = builders.load_algorithm(self.config, checkpoint, self.reward_env)
        if state.global_rng is not None:
            set_rng_state(state.global_rng)
        set_algorithm_rng_state(self.algo, state.algorithm_rng)

    def _build_loop(
        self, model: RewardEnsemble | None, state: RunState, updater: RewardUpdater | None
    ) -> OnlineFeedback | None:
        if not self.config.online:
            return None
        assert self._inputs.schedule is not None
        loop = OnlineFeedback(
            schedule=self._inputs.schedule,
            channels=self.channels,
            updater=updater or builders.make_updater(self.config),
            recorder=self.recorder,
            reward_env=self.reward_env,
            horizon=self.config.horizon,
            rng=self.query_rng,
            candidate_stride=self.config.candidate_stride,
            candidate_factor=self.config.candidate_factor,
            model=model,
        )
        loop.load_state_dict(state.loop)
        loop.on_update = self._after_update
        return loop

    # -- the run's state ---------------------------------------------------------------------
    @property
    def reward_model(self) -> RewardEnsemble | None:
        """The current learned reward (None for the oracle, or online before the first update)."""
        return self.loop.reward_model if self.loop is not None else self._static_model

    def current_reward(self):
        """The per-step reward function in force now (what evaluation reports as learned)."""
        model = self.reward_model
        return None if model is None else model.predict_rewards

    def timing(self) -> RunTiming:
        """Steps trained and time spent training them, over every session so far."""
        if self._frozen_timing is not None:
            return self._frozen_timing
        before, evaluator = self._timing_before, self.evaluator
        busy = time.perf_counter() - self._learn_start - evaluator.seconds
        busy_cpu = time.process_time() - self._learn_cpu - evaluator.cpu_seconds
        loop = self.loop
        online = (
            (loop.update_seconds, loop.update_cpu_seconds, loop.query_cpu_seconds)
            if loop is not None
            else (0.0, 0.0, 0.0)
        )
        return RunTiming(
            steps=before.steps + int(self.algo.num_timesteps) - self._start_steps,
            busy_s=before.busy_s + busy,
            busy_cpu_s=before.busy_cpu_s + busy_cpu,
            reward_update_s=before.reward_update_s + online[0],
            reward_update_cpu_s=before.reward_update_cpu_s + online[1],
            query_cpu_s=before.query_cpu_s + online[2],
        )

    def state_dict(self) -> RunState:
        """Everything a checkpoint needs besides the networks and the replay buffer."""
        return RunState(
            starts=self.starts,
            global_rng=rng_state(),
            algorithm_rng=algorithm_rng_state(self.algo),
            query_rng=dict(self.query_rng.bit_generator.state),
            sources=[c.source.state_dict() for c in self.channels],
            loop=self.loop.state_dict() if self.loop is not None else {},
            recorder=self.recorder.state_dict(),
            evaluations=self.history,
            wall_time_s=self._wall_before + time.perf_counter() - self._started,
            timing=self.timing(),
        )

    def checkpoint(self) -> None:
        """Write a complete checkpoint (atomically): policy, buffer, reward model, state."""
        save_checkpoint(self.run_dir, self.algo, self.state_dict().to_dict(), self.reward_model)

    def _after_update(self, loop: OnlineFeedback) -> None:
        """Every reward update is saved at once: the model, then a checkpoint."""
        loop.reward_model.save(self.run_dir / "reward_model.pt")
        self.checkpoint()
        if self.report is not None:
            self.report.updated(loop)

    def _evaluate(self, algo, reward_fn) -> dict:
        """An evaluation; with a reporter its first episode is kept for a clip (simulator
        states recorded where the env has them: the clip then shows the robot)."""
        config = self.config
        result, episodes = evaluate_episodes(
            algo,
            config.env_id,
            config.eval_episodes,
            config.seed + 10_000,
            reward_fn,
            config.max_episode_steps,
            record_states=self.report is not None and self.report.record_states,
        )
        if self.report is not None:
            self.report.clip = min(episodes, key=lambda ep: ep.episode_id)
        return result

    def _status(self) -> str:
        last = self.history[-1] if self.history else None
        rated = self._inputs.rated
        labels = self.loop.labels if self.loop is not None else (len(rated) if rated else 0)
        true = f"{last['true_return']['mean']:.1f}" if last else "-"
        learned = last["learned_return"]["mean"] if last and last["learned_return"] else None
        learned = "-" if learned is None else f"{learned:.1f}"
        return f"| labels {labels} | true {true} | learned {learned}"

    # -- learning ----------------------------------------------------------------------------
    def learn(self) -> dict:
        """Train to ``total_steps`` (from wherever the run is), evaluate, write the summary."""
        config, algo = self.config, self.algo
        start = int(algo.num_timesteps)
        self._learn_start, self._learn_cpu = time.perf_counter(), time.process_time()
        if self.report is None:
            return self._learn(start)
        key = str(self.run_dir.resolve())  # names the run across resumes
        return self.report.around(key, config.to_dict(), start, lambda: self._learn(start))

    def _learn(self, start: int) -> dict:
        config, algo = self.config, self.algo
        with progress_bar(self.progress) as bar:
            task = bar.add_task(
                f"{config.algo} {config.method}", total=config.total_steps, completed=start
            )
            monitor = TrainingMonitor(
                bar, task, self._status, self.checkpoint, config.checkpoint_every, start
            )
            callbacks = [c for c in (self.loop, monitor, self.evaluator) if c is not None]
            if self.report is not None and self.loop is not None:
                callbacks.insert(1, self.report.progress(self.loop))
            if config.method != "oracle":
                callbacks.append(LearnedEpisodeReturns(self.recorder, self.current_reward))
            if config.algo == "ppo":
                scorer = PPORolloutScorer(self.reward_env)  # scores a rollout before PPO trains
                callbacks.insert(1 if self.loop is not None else 0, scorer)
            if self.loop is not None and self.loop.stale:
                # labels that arrived (or were withdrawn) after the last checkpoint: train first
                self.loop.init_callback(algo)
                self.loop.update_reward()
            if config.total_steps > start:
                algo.learn(
                    config.total_steps - start,
                    callback=CallbackList(callbacks),
                    reset_num_timesteps=False,
                )
            self._frozen_timing = self.timing()
        self.close()
        return self._finish()

    def close(self) -> None:
        """Close the training environments (``learn`` does; a run built and not trained
        should be closed by whoever built it). Evaluation makes its own, so this is final."""
        self.reward_env.close()

    def _finish(self) -> dict:
        """The final evaluation (it ends the learning curve), policy, checkpoint, summary."""
        final = self._evaluate(self.algo, self.current_reward())
        final["env_steps"] = int(self.algo.num_timesteps)
        if self.history and self.history[-1]["env_steps"] == final["env_steps"]:
            # SAC trains once more after the last periodic evaluation: the final policy wins
            self.history[-1] = final
        else:
            self.history.append(final)
        log_evaluation(self.algo.logger, final)  # the CSV's curve ends with the summary's numbers
        if self.report is not None:
            self.report.final(final, self.loop)
        self.algo.save(self.run_dir / "policy.zip")
        self.checkpoint()
        summary = self.summary()
        atomic_write_bytes(self.run_dir / "summary.json", json.dumps(summary, indent=2).encode())
        return summary

    def summary(self) -> dict:
        """Returns, labels, speed and the learning curve of the run so far."""
        timing, history = self.timing(), self.history
        final = history[-1] if history else None
        best = max(history, key=lambda r: r["true_return"]["mean"]) if history else None
        data = [c.store.data for c in self.channels] or [self._inputs.rated, self._inputs.pairs]
        trained, busy, busy_cpu = timing.steps, timing.busy_s, timing.busy_cpu_s
        return {
            "true_return_final": final["true_return"] if final else None,
            "true_return_best": best["true_return"] if best else None,
            "learned_return_final": final["learned_return"] if final else None,
            **_label_counts(data),
            # withdrawn labels (undone in the app) are not in labels_used and freed no budget
            "labels_retracted": sum(c.store.retracted for c in self.channels),
            "env_steps": int(self.algo.num_timesteps),
            "wall_time_s": self._wall_before + time.perf_counter() - self._started,
            "env_steps_per_s": trained / busy if trained > 0 and busy > 0 else None,
            # CPU time does not stretch when other jobs share the machine: compare runs with this
            "env_steps_per_cpu_s": trained / busy_cpu if trained > 0 and busy_cpu > 0 else None,
            "reward_update_s": timing.reward_update_s,
            "reward_update_cpu_s": timing.reward_update_cpu_s,
            "query_cpu_s": timing.query_cpu_s,
            "reward_model": self.reward_log,
            # per update, with a simulated teacher: the reward on the policy's own segments
            "reward_fidelity": self.loop.fidelity if self.loop is not None else [],
            "evaluations": history,
            "config": self.config.to_dict(),
        }


def _label_counts(data: list) -> dict[str, int]:
    """The summary's label counts: ratings and pairs learned from, and both together."""
    ratings = sum(len(d) for d in data if isinstance(d, RatedSegments))
    pairs = sum(len(d) for d in data if isinstance(d, PreferencePairs))
    return {"labels_used": ratings + pairs, "ratings_used": ratings, "pairs_used": pairs}
