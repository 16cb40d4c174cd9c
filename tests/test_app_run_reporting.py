"""The run's side of reporting (``ratingrl.rl.reporting``): what a tiny online run tells its
reporter, that reporting changes nothing in the run, and that a reporter which fails or hangs
never stops or slows training."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import replace

import pytest

from ratingrl.rl.reporting import BackgroundReporter, RunReporter
from ratingrl.rl.run import Run


class Recording:
    """A reporter keeping every call, in order."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def on_start(self, key, config, env_steps):
        self.calls.append(("start", key, config, env_steps))

    def on_labels(self, env_steps, requested, labels):
        self.calls.append(("labels", env_steps, requested, labels))

    def on_update(self, env_steps, labels, row):
        self.calls.append(("update", env_steps, labels, row))

    def on_evaluation(self, result, episode):
        self.calls.append(("evaluation", result, episode))

    def on_finish(self, status):
        self.calls.append(("finish", status))

    def close(self):
        self.calls.append(("close",))

    def of(self, kind: str) -> list[tuple]:
        return [c for c in self.calls if c[0] == kind]


class Broken(Recording):
    """A reporter whose every report fails, as a database that went away would."""

    def __getattribute__(self, name):
        if name.startswith("on_"):

            def fail(*_args):
                raise ConnectionError("database is gone")

            return fail
        return super().__getattribute__(name)


def test_the_recording_reporter_is_a_run_reporter():
    assert isinstance(Recording(), RunReporter)


@pytest.mark.slow
def test_a_tiny_online_run_reports_rounds_updates_and_evaluations(tmp_path, tiny_config, caplog):
    config = replace(tiny_config, checkpoint_every=300)
    reporter = Recording()
    run = Run.create(config, tmp_path / "run", reporter=reporter, progress=False)
    summary = run.learn()

    kinds = [c[0] for c in reporter.calls]
    assert kinds[0] == "start" and kinds[-2:] == ["finish", "close"]
    assert reporter.calls[0][1:] == (str((tmp_path / "run").resolve()), config.to_dict(), 0)
    assert reporter.of("finish") == [("finish", "finished")]
    # rounds at 250 and 500 steps, 10 ratings each, answered at once by the simulated teacher
    labels = reporter.of("labels")
    assert labels[-1][2:] == ([10, 10], 20) and labels[-1][1] == summary["env_steps"]
    asked = {tuple(c[2]): c[1] for c in reversed(labels)}  # when each round was first seen
    assert 250 <= asked[(10,)] < 300 and 500 <= asked[(10, 10)] < 550
    assert [c[1] for c in labels] == sorted(c[1] for c in labels)
    # two reward updates, after each round, with their loss
    updates = reporter.of("update")
    assert [u[2] for u in updates] == [10, 20]
    assert all(isinstance(u[3]["loss"], float) and u[3]["epochs"] == 5 for u in updates)
    # the evaluations are the summary's (the final one, after SAC's last step, replaces the
    # periodic one at the same step, as in the run's history), each with an episode for a clip
    evaluations = reporter.of("evaluation")
    assert [e[1]["env_steps"] for e in evaluations] == [300, 600, 600]
    assert list({e[1]["env_steps"]: e[1] for e in evaluations}.values()) == summary["evaluations"]
    for _, result, episode in evaluations:
        assert episode.length == 100 and episode.obs.shape == (100, 3)
        assert episode.states is None  # Pendulum has no simulator state to replay
        assert episode.total_return == pytest.approx(result["true_return"]["episodes"][0])



@pytest.mark.slow
def test_a_reporter_failing_at_every_call_is_logged_once_and_training_goes_on(
    tmp_path, tiny_config, caplog
):
    config = replace(tiny_config, total_steps=300, budget=10, checkpoint_every=300)
    with caplog.at_level(logging.WARNING, logger="ratingrl.rl.reporting"):
        run = Run.create(config, tmp_path / "run", reporter=Broken(), progress=False)
        summary = run.learn()
    assert summary["labels_used"] == 10 and summary["env_steps"] == 300
    assert [e["env_steps"] for e in summary["evaluations"]] == [300]
    warnings = [r.getMessage() for r in caplog.records if "run reporting failed" in r.getMessage()]
    assert len(warnings) == 1 and "ConnectionError: database is gone" in warnings[0]
    # start, some label reports, one update, one evaluation, finish: every one failed
    assert run.report.reporter.failures >= 5 and run.report.reporter.dropped == 0


def test_a_hanging_reporter_holds_up_nothing_and_a_full_queue_drops_reports():
    release, started = threading.Event(), threading.Event()

    class Hanging(Recording):
        def on_labels(self, env_steps, requested, labels):
            started.set()
            release.wait(10)
            super().on_labels(env_steps, requested, labels)

    inner = Hanging()
    reporter = BackgroundReporter(inner, max_pending=3, close_timeout=10)
    began = time.perf_counter()
    reporter.on_labels(1, [10], 0)  # the worker takes it and hangs
    assert started.wait(5)
    for steps in range(2, 8):  # 3 wait in the queue, 3 are dropped
        reporter.on_labels(steps, [10], steps)
    assert time.perf_counter() - began < 1.0  # the caller never waited
    assert reporter.dropped == 3
    release.set()
    reporter.close()
    assert [c[1] for c in inner.of("labels")] == [1, 2, 3, 4]
    assert inner.calls[-1] == ("close",)
    reporter.on_finish("finished")  # after close: ignored, not an error
    assert inner.calls[-1] == ("close",)
