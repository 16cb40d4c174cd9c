"""The online feedback loop as one SB3 callback: query, rate, learn the reward, relabel.

Rounds of queries follow a :class:`~ratingrl.feedback.schedules.Schedule` (R4's growing gaps,
RbRL's fixed interval, or explicit steps). At each round the callback cuts windows from the
recorder's last episodes, lets each channel's query selector pick some (or pairs of them, for
preference queries), and ``request``-s labels from the channel's
:class:`~ratingrl.feedback.sources.FeedbackSource`. It ``collect``-s whatever has arrived at
every rollout end, so a simulated teacher (answers at once) and people rating in the app (answer
later) run through the same code. New labels are written to disk *before* anything is trained on
them (no label is lost to a crash), then the reward is updated -- the update's length grows with
the labels, since an epoch is a pass over all of them, unless the run fixes its gradient steps
(``reward_update_steps``) -- the environment wrapper gets the new reward and SAC's whole replay
buffer is relabelled.

A run may ask for several kinds of feedback at once (ratings *and* preference pairs): each kind
is a :class:`~ratingrl.feedback.store.FeedbackChannel` (source, selector, store, queries per
round). Every channel queries at the same rounds, from the same candidate windows, and one
updater learns from every channel's labels. A run with one channel is the plain loop.

If the source coarsens its rating scale mid-run (R4's dynamic classes), the stored ratings are
remapped onto the new scale with the source's ``remapper()``.

A source may withdraw labels it handed out (a person undoes a rating in the app; see
:meth:`~ratingrl.feedback.sources.FeedbackSource.retracted`). At the next poll they are removed
from the store -- and from its Parquet file, before anything is trained -- and the reward is
updated on the labels that remain, exactly as after new labels. A withdrawn label does not free
budget: its query was asked and answered, so rounds and their counts stay as they were; the run
reports how many labels remain (``labels_used``) and how many were withdrawn
(``labels_retracted``). The update is warm-started like every other, and if the remaining labels
cannot teach a reward (one rating class left) the last model stays until they can.

Work happens in ``on_rollout_end``: for SAC (``train_freq=1``) that is every step, after the
transition is stored; for PPO it is before the rollout is scored and trained on.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Sequence

import numpy as np
import torch
from gymnasium import spaces
from stable_baselines3.common.buffers import ReplayBuffer
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm

from ratingrl.feedback.preference_source import SegmentPairs
from ratingrl.feedback.schedules import Schedule, ScheduleError
from ratingrl.feedback.segments import FeedbackError, SegmentSet
from ratingrl.feedback.store import FeedbackChannel, Labels
from ratingrl.rewards.nets import RewardEnsemble
from ratingrl.rewards.training import TrainingError
from ratingrl.rl.diagnostics import label_fidelity
from ratingrl.rl.relabel import relabel_replay_buffer
from ratingrl.rl.reward_wrapper import EpisodeRecorder, LearnedRewardVecEnv

__all__ = ["RewardUpdater", "OnlineFeedback"]


RewardUpdater = Callable[
    [Sequence[Labels | None], RewardEnsemble | None], tuple[RewardEnsemble, dict]
]
"""``(labels of each channel, current model or None) -> (updated model, log row)``.

A channel's entry is None while its labels cannot teach a reward yet (one rating class, fewer
than two pairs); the loop calls the updater only when some entry is not None.
"""


class OnlineFeedback(BaseCallback):
    """The online loop; every component is passed in (channels, updater, recorder).

    The loop never asks what kind of feedback it handles: a selector's answer (``[k]``
    segment indices, or ``[k, 2]`` pair indices) becomes the source's query, and whatever the
    source hands back goes to the channel's store and, with every other channel's labels, to
    the updater. So a rating teacher, a preference teacher, both at once, or the rating app plug
    in unchanged. ``schedule.steps`` time the rounds; each channel brings its per-round counts.
    ``reward_model`` is the current reward ensemble (``self.model`` is SB3's algorithm).
    """

    def __init__(
        self,
        *,
        schedule: Schedule,
        channels: Sequence[FeedbackChannel],
        updater: RewardUpdater,
        recorder: EpisodeRecorder,
        reward_env: LearnedRewardVecEnv,
        horizon: int,
        rng: np.random.Generator,
        candidate_stride: int = 10,
        candidate_factor: int = 10,
        model: RewardEnsemble | None = None,
        on_update: Callable[[OnlineFeedback], None] | None = None,
    ) -> None:
        super().__init__()
        _check_channels(schedule, channels)
        self.schedule, self.channels = schedule, tuple(channels)
        self.updater, self.recorder = updater, recorder
        self.reward_env, self.horizon, self.rng = reward_env, horizon, rng
        self.candidate_stride, self.candidate_factor = candidate_stride, candidate_factor
        self.reward_model = model
        self.on_update = on_update
        self.trained_on = self.labels if model is not None else 0
        self.trained_retracted = self.retracted if model is not None else 0
        self.update_seconds = 0.0
        self.update_cpu_seconds = self.query_cpu_seconds = 0.0  # process CPU time
        self.seen = [len(c.store) if model is not None else 0 for c in self.channels]
        self.fidelity: list[dict] = []  # per update, with a simulated teacher (diagnostics.py)
        self.last_update: dict = {}  # the latest update's log row (loss...), for on_update

    @property
    def labels(self) -> int:
        """Labels stored so far, over every channel (withdrawn ones no longer count)."""
        return sum(len(c.store) for c in self.channels)

    @property
    def retracted(self) -> int:
        """Labels withdrawn by their sources and removed from the stores, over every channel."""
        return sum(c.store.retracted for c in self.channels)

    @property
    def stale(self) -> bool:
        """Whether the labels changed since the reward was last trained: some arrived, or some
        were withdrawn (then the count alone may not tell: one out, one in)."""
        return self.labels > self.trained_on or self.retracted > self.trained_retracted

    def state_dict(self) -> dict:
        """How many labels (and withdrawals) the current reward has learned from."""
        return {
            "trained_on": self.trained_on,
            "trained_retracted": self.trained_retracted,
            "seen": list(self.seen),
            "fidelity": list(self.fidelity),
        }

    def load_state_dict(self, state: dict) -> None:
        """Continue after a resume; with no reward model yet nothing has been learned."""
        if self.reward_model is None:
            self.trained_on = self.trained_retracted = 0
        else:
            self.trained_on = int(state.get("trained_on", 0))
            self.trained_retracted = int(state.get("trained_retracted", 0))
            self.seen = [int(n) for n in state.get("seen", self.seen)]
            self.fidelity = list(state.get("fidelity", []))

    def _mark_trained(self) -> None:
        """Remember the labels as of now, so the next update waits for a change."""
        self.trained_on, self.trained_retracted = self.labels, self.retracted

    # -- SB3 hooks -----------------------------------------------------------------------------
    def _on_step(self) -> bool:
        return True

    def _on_rollout_end(self) -> None:
        while due := [c for c in self.channels if c.due(self.schedule.steps, self.num_timesteps)]:
            started = time.process_time()
            asked = self._query(due)
            self.query_cpu_seconds += time.process_time() - started
            if not asked:
                break  # not enough finished episodes yet: try again at the next rollout end
        self.poll()

    # -- the loop ------------------------------------------------------------------------------
    def returns_fn(self, obs: np.ndarray, acts: np.ndarray) -> np.ndarray:
        """Ensemble returns for the selectors (zeros before the first reward model)."""
        if self.reward_model is None:
            return np.zeros((1, len(obs)))
        return self.reward_model.predict_returns(obs, acts)

    def _returns_of(self, candidates: SegmentSet) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
        """:meth:`returns_fn` that scores ``candidates`` -- windows overlapping in their
        episodes -- one step at a time: every step once, not once per window holding it."""

        def returns(obs: np.ndarray, acts: np.ndarray) -> np.ndarray:
            own = obs is candidates.obs and acts is candidates.acts
            if self.reward_model is None or not own:
                return self.returns_fn(obs, acts)
            return window_returns(self.reward_model, candidates)

        return returns

    def _query(self, due: list[FeedbackChannel]) -> bool:
        """Ask every due channel its round's queries, all from the same candidate windows."""
        try:
            windows = self.recorder.segments(self.horizon, self.candidate_stride)
        except FeedbackError:
            return False
        counts = [c.counts[c.store.rounds_done] for c in due]
        if len(windows) < max(*counts, 2):
            return False
        for channel, k in zip(due, counts, strict=True):
            candidates = windows
            if not channel.episode_based():
                m = min(len(windows), self.candidate_factor * k)
                candidates = windows.subset(np.sort(self.rng.choice(len(windows), m, False)))
            returns_fn = self._returns_of(candidates)
            picked = np.asarray(channel.selector.select(candidates, k, returns_fn, self.rng))
            channel.source.request(_queries(candidates, picked))
            channel.store.rounds_done += 1
        self.logger.record("feedback/requested", sum(counts))
        self._record_each("requested", {c.name: k for c, k in zip(due, counts, strict=True)})
        return True

    def poll(self, timeout: float = 0.0) -> None:
        """Store whatever labels arrived (each channel waits up to ``timeout`` s), drop the ones
        their source withdrew; update the reward when the labels changed.

        Withdrawals are asked for after the new labels are stored, so a label collected and
        withdrawn between two polls leaves in the same poll it arrived.
        """
        for channel in self.channels:
            self._collect(channel, timeout)
            ids = frozenset(str(i) for i in channel.source.retracted())
            if ids and channel.store.retract(ids):
                self.logger.record("feedback/retracted", self.retracted)
        if self.stale:
            self.update_reward()

    def _collect(self, channel: FeedbackChannel, timeout: float) -> None:
        """Store the channel's new labels (on disk before anything trains on them)."""
        labels = channel.source.collect(timeout)
        if labels is None or not len(labels):
            return
        remapped = channel.store.remapped
        channel.store.add(labels)
        if channel.store.remapped > remapped:
            self.logger.record("feedback/remapped", sum(c.store.remapped for c in self.channels))

    def update_reward(self) -> None:
        """Train on every label so far, swap the env's reward, relabel SAC's replay buffer."""
        data = [c.learnable() for c in self.channels]
        if all(d is None for d in data):
            self.logger.record("feedback/waiting_for_second_class", 1)
            self._mark_trained()  # retry when new labels arrive, not every step
            return
        started, started_cpu = time.perf_counter(), time.process_time()
        before = self.reward_model
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # empty classes early on are expected
            try:
                self.reward_model, row = self.updater(data, self.reward_model)
            except TrainingError as err:  # e.g. R4's split holds one class: wait for labels
                self.logger.record("reward_model/skipped", str(err)[:80])
                self._mark_trained()
                return
        self._mark_trained()
        self.reward_env.reward_fn = self.reward_model.predict_rewards
        relabelled = self._relabel()
        self.update_seconds += time.perf_counter() - started
        self.update_cpu_seconds += time.process_time() - started_cpu
        self._record_fidelity(before, data)
        self.logger.record("feedback/labels", self.labels)
        self.logger.record("feedback/rounds", min(c.store.rounds_done for c in self.channels))
        self._record_each("labels", {c.name: len(c.store) for c in self.channels})
        self.logger.record("reward_model/relabelled", relabelled)
        for key, value in row.items():
            self.logger.record(f"reward_model/{key}", value)
        self.last_update = dict(row)
        if self.on_update is not None:
            self.on_update(self)

    def _record_fidelity(self, before: RewardEnsemble | None, data: list) -> None:
        """Log how the reward ranks the policy's own segments (simulated teachers only)."""
        row = label_fidelity(before, self.reward_model, data, self.seen)
        self.seen = [len(c.store) for c in self.channels]
        if row:
            for key, value in row.items():
                if value is not None:
                    self.logger.record(f"reward_fidelity/{key}", value)
            steps = int(self.num_timesteps)
            self.fidelity.append({"env_steps": steps, "labels": self.labels, **row})

    def _record_each(self, key: str, values: dict[str, int]) -> None:
        """Per-channel columns (``feedback/labels_pairs``), only when there are several."""
        if len(self.channels) > 1:
            for name, value in values.items():
                self.logger.record(f"feedback/{key}_{name}", value)

    def _relabel(self) -> int:
        if not isinstance(self.model, OffPolicyAlgorithm) or self.reward_model is None:
            return 0  # self.model is SB3's algorithm: only off-policy ones keep old rewards
        buffer = self.model.replay_buffer
        if not isinstance(buffer, ReplayBuffer):
            return 0
        space = self.model.action_space
        box = space if isinstance(space, spaces.Box) else None
        return relabel_replay_buffer(buffer, self.reward_model.predict_rewards, box)


def _check_channels(schedule: Schedule, channels: Sequence[FeedbackChannel]) -> None:
    """Every channel needs a count for each round; names must tell their log columns apart."""
    if not channels:
        raise ScheduleError("the online loop needs at least one feedback channel")
    for channel in channels:
        if len(channel.counts) != len(schedule.steps) or min(channel.counts) < 1:
            raise ScheduleError(
                f"channel {channel.name!r} asks {channel.counts} queries but the schedule has "
                f"{len(schedule.steps)} rounds: give each round a count >= 1"
            )
    names = [c.name for c in channels]
    if len(set(names)) != len(names):
        raise ScheduleError(f"feedback channels need distinct names, got {names}")


@torch.no_grad()
def window_returns(model: RewardEnsemble, windows: SegmentSet, rows: int = 65536) -> np.ndarray:
    """Ensemble returns ``[E, N]`` of windows cut from episodes, each distinct step scored once.

    Candidate windows start every ``candidate_stride`` steps and span ``horizon``, so scoring
    each window on its own scores a step ``horizon / stride`` times (5x in the tracks); the
    query then cost about half as much CPU as a reward update. Steps are told apart by
    (episode_id, start + t); the sums are the same as ``model.predict_returns``'s.
    """
    n, h = windows.obs.shape[:2]
    keys = (windows.episode_id.astype(np.int64)[:, None] << 32) + (
        windows.start.astype(np.int64)[:, None] + np.arange(h)
    )
    _, first, inverse = np.unique(keys.ravel(), return_index=True, return_inverse=True)
    obs = torch.as_tensor(windows.obs.reshape(n * h, -1)[first], dtype=torch.float32)
    acts = torch.as_tensor(windows.acts.reshape(n * h, -1)[first], dtype=torch.float32)
    chunks = [model(obs[s : s + rows], acts[s : s + rows]) for s in range(0, len(obs), rows)]
    steps = torch.cat(chunks, dim=-1)
    return steps[:, torch.as_tensor(inverse.ravel())].reshape(-1, n, h).sum(-1).numpy()


def _queries(candidates: SegmentSet, picked: np.ndarray) -> SegmentSet | SegmentPairs:
    """``[k]`` indices -> segments to rate; ``[k, 2]`` -> pairs to compare."""
    if picked.ndim == 2:
        return SegmentPairs(candidates.subset(picked[:, 0]), candidates.subset(picked[:, 1]))
    return candidates.subset(picked)
