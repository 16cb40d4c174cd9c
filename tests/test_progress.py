"""Progress is readable when the output is not a terminal: whole lines, at a modest rate."""

import io
import time

import pytest
from rich.console import Console

from ratingrl.progress import LogProgress, progress_bar

STATUS = "r4[regularization_strength=0.25] N=300 K=4 p=0.1: tau 0.842 | labels 300 | true -12.5"


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _console() -> tuple[Console, io.StringIO]:
    out = io.StringIO()
    return Console(file=out, force_terminal=False, width=80), out


def test_non_terminal_output_is_whole_lines_with_counts_and_status() -> None:
    console, out = _console()
    with progress_bar(console=console) as bar:
        assert isinstance(bar, LogProgress)
        task = bar.add_task("fidelity HalfCheetah-v5", total=40)
        for _ in range(40):
            bar.advance(task)
            bar.update(task, status=STATUS)
    lines = out.getvalue().splitlines()
    assert "━" not in out.getvalue() and "…" not in out.getvalue()
    assert lines[0].startswith("fidelity HalfCheetah-v5: 0/40 (0%) | 0:00:00 elapsed")
    last = lines[-1]
    assert last.startswith("fidelity HalfCheetah-v5: 40/40 (100%) | 0:00:00 elapsed")
    assert last.endswith(f" | {STATUS} | done")  # the whole status, brackets included
    assert len(last) > 80  # not cut to the console's width
    assert len(lines) <= 3  # start, maybe one while running, end: not one line per update


def test_lines_at_tenths_and_heartbeats_with_rate_and_time_left() -> None:
    console, out = _console()
    clock = Clock()
    with LogProgress(console, every_s=30.0, auto_refresh=False, clock=clock) as log:
        task = log.add_task("sac r4", total=100_000, completed=20_000, status="")
        clock.now = 4.0
        log.update(task, completed=31_000, status="400 steps/s")  # a new tenth, but too soon
        clock.now = 10.0
        log.update(task, completed=32_000, status="400 steps/s")  # a new tenth: a line
        clock.now = 20.0
        log.update(task, completed=33_000)  # same tenth, 10 s later: nothing
        clock.now = 41.0
        log.update(task, completed=34_000)  # same tenth, 31 s after the last line: heartbeat
        clock.now = 100.0
        log.update(task, completed=100_000, status="finished")
        log.update(task, completed=100_000, status="after the end")  # the end is printed once
    lines = out.getvalue().splitlines()
    assert lines == [
        "sac r4: 20,000/100,000 (20%) | 0:00:00 elapsed",
        "sac r4: 32,000/100,000 (32%) | 0:00:10 elapsed, 1,200/s, ~0:00:57 left | 400 steps/s",
        "sac r4: 34,000/100,000 (34%) | 0:00:41 elapsed, 341/s, ~0:03:13 left | 400 steps/s",
        "sac r4: 100,000/100,000 (100%) | 0:01:40 elapsed, 800/s | finished | done",
    ]


def test_closing_prints_the_last_state_of_an_unfinished_task() -> None:
    console, out = _console()
    clock = Clock()
    with LogProgress(console, auto_refresh=False, clock=clock) as log:
        task = log.add_task("rollouts", total=None)
        clock.now = 2.0
        log.advance(task, 3)
        log.update(task, status="stopped early")
    last = out.getvalue().splitlines()[-1]
    assert last == "rollouts: 3 | 0:00:02 elapsed, 1.50/s | stopped early"


def test_background_refresh_picks_up_a_status_set_just_after_advance() -> None:
    console, out = _console()
    with progress_bar(console=console, every_s=0.6) as bar:
        task = bar.add_task("ordinal runs", total=2)
        bar.advance(task)
        bar.update(task, status="mse seed 0 done")
        for _ in range(100):  # the refresh thread wakes every 0.1 s here
            if "mse seed 0 done" in out.getvalue():
                break
            time.sleep(0.05)
        assert "ordinal runs: 1/2 (50%)" in out.getvalue()
        assert out.getvalue().splitlines()[-1].endswith("| mse seed 0 done")


def test_terminal_keeps_rich_bars_and_disabled_prints_nothing() -> None:
    out = io.StringIO()
    terminal = Console(file=out, force_terminal=True, width=120)
    with progress_bar(console=terminal) as bar:
        assert not isinstance(bar, LogProgress)
        bar.update(bar.add_task("train r4", total=2), advance=2, status="val tau 0.8")
    assert "━" in out.getvalue() and "val tau 0.8" in out.getvalue()
    console, quiet = _console()
    with progress_bar(False, console=console) as bar:
        bar.update(bar.add_task("train r4", total=2), advance=2)
    assert quiet.getvalue() == ""


def test_log_progress_rejects_a_non_positive_interval() -> None:
    with pytest.raises(ValueError, match="every_s must be positive, got 0"):
        LogProgress(_console()[0], every_s=0)
