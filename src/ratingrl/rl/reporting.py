"""Telling someone outside the run how it goes: labels per round, reward updates, evaluations.

A :class:`RunReporter` receives the run's progress as plain numbers (and, with each evaluation,
one evaluation episode to show as a clip). The rl package defines the interface only; whoever
starts the run plugs an implementation in (``ratingrl train --ratings-db`` plugs in the rating
app's, which writes to the app's database so the operator page can draw the run). The training
loop never learns about it: it still sees only its feedback sources.

A reporter must never slow training or stop it. :class:`BackgroundReporter` wraps any reporter:
calls are queued and made on one worker thread, so a database that is locked or slow holds up
the worker, not the policy; a call that raises is logged once (then counted silently) and
training goes on. When the queue is full a report is dropped rather than waited for.
:class:`ReportProgress` is the SB3 callback that notices new rounds and labels of the online
loop (two integer comparisons per step).
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

from stable_baselines3.common.callbacks import BaseCallback

from ratingrl.feedback.rollouts import Episode
from ratingrl.rl.online import OnlineFeedback

__all__ = ["RunReporter", "BackgroundReporter", "ReportProgress", "RunReport", "env_has_states"]

_log = logging.getLogger(__name__)


@runtime_checkable
class RunReporter(Protocol):
    """Receives a run's progress; every count is cumulative over the run (resumes included).

    ``on_start`` comes first, with a key naming the run across resumes, its configuration
    (``RunConfig.to_dict()``) and the env step it starts from (0, or a resume's checkpoint: a
    report from beyond it was undone by the resume). ``on_labels``: a new round of queries was
    asked or labels arrived (``requested``: the labels asked for in each round so far;
    ``labels``: stored now, withdrawn ones excluded). ``on_update``: the learned reward was
    retrained on ``labels`` labels; ``row`` holds the update's numbers (``loss``, ``epochs``,
    ``steps``, ``val_score``...). ``on_evaluation``: an evaluation's result (as in
    ``summary.json``: ``env_steps``, ``true_return``, ``learned_return``...) and one of its
    episodes, with simulator states where the env has them, for a clip (None if none was
    kept). ``on_finish``: ``status`` is ``"finished"`` or ``"stopped"`` (an error ended
    ``learn``). ``close`` comes last.
    """

    def on_start(self, key: str, config: dict[str, Any], env_steps: int) -> None: ...

    def on_labels(self, env_steps: int, requested: list[int], labels: int) -> None: ...

    def on_update(self, env_steps: int, labels: int, row: dict[str, Any]) -> None: ...

    def on_evaluation(self, result: dict[str, Any], episode: Episode | None) -> None: ...

    def on_finish(self, status: str) -> None: ...

    def close(self) -> None: ...


_STOP = object()


class BackgroundReporter:
    """``inner``'s methods called on a worker thread, in order; failures logged once.

    ``max_pending`` reports may wait; beyond that new ones are dropped (and counted in
    ``dropped``): a stuck database must not grow memory or block the run. :meth:`close`
    waits up to ``close_timeout`` seconds for what is queued, then closes ``inner``.
    """

    def __init__(self, inner: RunReporter, max_pending: int = 256, close_timeout: float = 30.0):
        self.inner, self.close_timeout = inner, close_timeout
        self.failures = self.dropped = 0
        self._queue: queue.Queue = queue.Queue(max_pending)
        self._thread = threading.Thread(target=self._work, name="ratingrl-report", daemon=True)
        self._thread.start()
        self._closed = False

    def _work(self) -> None:
        while (call := self._queue.get()) is not _STOP:
            name, args = call
            try:
                getattr(self.inner, name)(*args)
            except Exception as err:  # a reporter's failure never reaches training
                self.failures += 1
                if self.failures == 1:
                    _log.warning(
                        "run reporting failed (%s: %s); training goes on, later failures are "
                        "not logged",
                        type(err).__name__,
                        err,
                    )

    def _put(self, name: str, *args: Any) -> None:
        if self._closed:
            return
        try:
            self._queue.put_nowait((name, args))
        except queue.Full:
            self.dropped += 1

    def on_start(self, key: str, config: dict[str, Any], env_steps: int) -> None:
        self._put("on_start", key, dict(config), int(env_steps))

    def on_labels(self, env_steps: int, requested: list[int], labels: int) -> None:
        self._put("on_labels", int(env_steps), [int(n) for n in requested], int(labels))

    def on_update(self, env_steps: int, labels: int, row: dict[str, Any]) -> None:
        self._put("on_update", int(env_steps), int(labels), dict(row))

    def on_evaluation(self, result: dict[str, Any], episode: Episode | None) -> None:
        self._put("on_evaluation", dict(result), episode)

    def on_finish(self, status: str) -> None:
        self._put("on_finish", status)

    def close(self) -> None:
        """Report what is queued (up to ``close_timeout`` s), then close the inner reporter."""
        if self._closed:
            return
        self._closed = True
        self._queue.put(_STOP)
        self._thread.join(self.close_timeout)
        if self._thread.is_alive():
            _log.warning(
                "run reporting: gave up waiting for queued reports after %ss", self.close_timeout
            )
            return
        try:
            self.inner.close()
        except Exception as err:
            _log.warning("run reporting: closing failed (%s: %s)", type(err).__name__, err)


class ReportProgress(BaseCallback):
    """Reports the online loop's rounds and labels whenever either changed (at rollout ends).

    ``counts()`` returns ``(requested per round, labels)`` of the loop; this callback only
    compares them with what it reported last.
    """

    def __init__(self, reporter: RunReporter, counts: Callable[[], tuple[list[int], int]]):
        super().__init__()
        self.reporter, self.counts = reporter, counts
        self._last: tuple[list[int], int] | None = None

    def _on_step(self) -> bool:
        return True

    def _on_rollout_end(self) -> None:
        now = self.counts()
        if now != self._last:
            self._last = now
            self.reporter.on_labels(int(self.num_timesteps), *now)


def env_has_states(env_id: str) -> bool:
    """Whether ``env_id``'s episodes can record simulator states (MuJoCo: Gymnasium or DMC),
    so an evaluation clip replays the robot rather than drawing its numbers."""
    from ratingrl.feedback.envs import has_physics_state, make_env

    probe = make_env(env_id)
    try:
        return has_physics_state(probe)
    finally:
        probe.close()


def label_counts(loop: OnlineFeedback) -> tuple[list[int], int]:
    """Labels asked for in each round so far (over every channel) and labels stored now
    (withdrawn ones not)."""
    rounds = max(c.store.rounds_done for c in loop.channels)
    asked = [
        sum(c.counts[r] for c in loop.channels if r < c.store.rounds_done) for r in range(rounds)
    ]
    return asked, loop.labels


class RunReport:
    """A run's side of reporting: what :class:`~ratingrl.rl.run.Run` calls, in one place.

    Holds the reporter (behind a :class:`BackgroundReporter`), whether evaluation episodes
    should record simulator states (``record_states``) and the latest evaluation's episode
    (``clip``, set by the run's evaluation).
    """

    def __init__(self, reporter: RunReporter, env_id: str) -> None:
        self.reporter = BackgroundReporter(reporter)
        self.record_states = env_has_states(env_id)
        self.clip: Episode | None = None

    def around(self, key: str, config: dict, start: int, learn: Callable[[], dict]) -> dict:
        """``learn()`` between ``on_start`` and ``on_finish`` (``"stopped"`` if it raised);
        the reporter is closed (its queued reports sent) before this returns."""
        self.reporter.on_start(key, config, start)
        status = "stopped"
        try:
            summary = learn()
            status = "finished"
            return summary
        finally:
            self.reporter.on_finish(status)
            self.reporter.close()

    def progress(self, loop: OnlineFeedback) -> ReportProgress:
        """The callback reporting ``loop``'s rounds and labels as they change."""
        return ReportProgress(self.reporter, lambda: label_counts(loop))

    def evaluated(self, result: dict) -> None:
        """An evaluation is done: its result, with the episode kept for a clip."""
        self.reporter.on_evaluation(result, self.clip)

    def updated(self, loop: OnlineFeedback) -> None:
        """The reward was retrained: the labels it learned from and the update's numbers."""
        self.reporter.on_update(int(loop.num_timesteps), loop.labels, loop.last_update)

    def final(self, result: dict, loop: OnlineFeedback | None) -> None:
        """The run's last evaluation, after its final label counts."""
        if loop is not None:
            self.reporter.on_labels(result["env_steps"], *label_counts(loop))
        self.evaluated(result)
