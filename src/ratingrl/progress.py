"""One place that builds progress displays, so every long step looks the same.

Progress is opt-out (``enabled=False``) and never required: library functions take an
optional callback, and this helper gives the display when a person is watching. On a terminal
that is a set of rich bars. Anywhere else (a file, a CI log, ``nohup``) a bar cannot redraw: rich
would print it once, at the end, cut to 80 columns (``━━━━ 204… 0:… 0:0…``). There we print
plain, complete lines instead, at a modest rate, through the same ``add_task`` / ``update`` /
``advance`` calls, so callers never need to know which display they got.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta

from rich import get_console
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

__all__ = ["LogProgress", "progress_bar"]


class _Silent:
    """Stands in for ``rich.progress.Progress`` when progress is off."""

    def add_task(self, *args: object, **kwargs: object) -> int:
        return 0

    def update(self, *args: object, **kwargs: object) -> None:
        return None

    def advance(self, *args: object, **kwargs: object) -> None:
        return None


@dataclass
class _Task:
    description: str
    total: float | None
    completed: float
    status: str
    started: float  # clock time of add_task
    first: float  # completed at add_task (a resumed run starts part-way)
    printed_at: float  # clock time of the last line
    printed_step: int  # tenths of the total reached at the last line
    changed: bool = False  # something to report since the last line
    done: bool = False  # the closing line is out


def _number(value: float) -> str:
    return f"{int(value):,}" if float(value).is_integer() else f"{value:,.2f}"


def _duration(seconds: float) -> str:
    return str(timedelta(seconds=round(max(seconds, 0.0))))


class LogProgress:
    """Progress as plain log lines, for a console that is not a terminal.

    Takes the calls callers make on ``rich.progress.Progress`` (``add_task``, ``update``,
    ``advance``). A task prints a line when it starts, when it passes another tenth of its total
    (at most one line per ``every_s / 6`` seconds), at least every ``every_s`` seconds while it
    moves, and when it finishes. Each line is whole: description, done/total, percentage,
    elapsed, rate, time left and the caller's ``status``. Lines are printed by a background
    thread (``auto_refresh``) so that a status set just after an ``advance`` is in the line;
    :meth:`refresh` prints what is due at once.
    """

    def __init__(
        self,
        console: Console,
        every_s: float = 30.0,
        auto_refresh: bool = True,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if every_s <= 0:
            raise ValueError(f"every_s must be positive, got {every_s!r}")
        self.console, self.every_s, self.clock = console, every_s, clock
        self.auto_refresh = auto_refresh
        self._tasks: list[_Task] = []
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> LogProgress:
        if self.auto_refresh:
            self._thread = threading.Thread(
                target=self._refresh_loop, name="progress-lines", daemon=True
            )
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.refresh(closing=True)

    def _refresh_loop(self) -> None:
        while not self._stop.wait(min(0.5, self.every_s / 6)):
            self.refresh()

    def add_task(
        self,
        description: str,
        start: bool = True,
        total: float | None = 100.0,
        completed: float = 0,
        visible: bool = True,
        **fields: object,
    ) -> int:
        """Start a task (same arguments as ``Progress.add_task``) and print its first line."""
        with self._lock:
            now = self.clock()
            status = str(fields.get("status", ""))
            step = self._step(total, completed)
            task = _Task(description, total, completed, status, now, completed, now, step)
            self._tasks.append(task)
            self._print(task, now)
            return len(self._tasks) - 1

    def update(
        self,
        task_id: int,
        *,
        total: float | None = None,
        completed: float | None = None,
        advance: float | None = None,
        description: str | None = None,
        **fields: object,
    ) -> None:
        """Change a task as ``Progress.update`` does; ``status`` is the only field shown."""
        with self._lock:
            task = self._tasks[task_id]
            if total is not None:
                task.total = total
            if completed is not None:
                task.completed = completed
            if advance is not None:
                task.completed += advance
            if description is not None:
                task.description = description
            if "status" in fields:
                task.status = str(fields["status"])
            task.changed = True
            if not self.auto_refresh:
                self.refresh()

    def advance(self, task_id: int, advance: float = 1) -> None:
        """Add ``advance`` to a task's completed count."""
        self.update(task_id, advance=advance)

    def refresh(self, closing: bool = False) -> None:
        """Print every line that is due now (on ``closing``, each task's last state)."""
        with self._lock:
            now = self.clock()
            for task in self._tasks:
                if task.done or not task.changed:
                    continue
                finished = task.total is not None and task.completed >= task.total
                step = self._step(task.total, task.completed)
                since = now - task.printed_at
                milestone = step > task.printed_step and since >= self.every_s / 6
                if closing or finished or milestone or since >= self.every_s:
                    task.done = finished
                    self._print(task, now)

    @staticmethod
    def _step(total: float | None, completed: float) -> int:
        return int(10 * completed / total) if total else 0

    def _print(self, task: _Task, now: float) -> None:
        elapsed = now - task.started
        rate = (task.completed - task.first) / elapsed if elapsed > 0 else 0.0
        count = _number(task.completed)
        if task.total:
            count += f"/{_number(task.total)} ({100 * task.completed / task.total:.0f}%)"
        timing = f"{_duration(elapsed)} elapsed"
        if rate > 0:
            timing += f", {rate:,.2f}/s" if rate < 10 else f", {rate:,.0f}/s"
            if task.total and not task.done:
                timing += f", ~{_duration((task.total - task.completed) / rate)} left"
        parts = [f"{task.description}: {count}", timing] + ([task.status] if task.status else [])
        line = " | ".join(parts) + (" | done" if task.done else "")
        self.console.print(line, markup=False, highlight=False, emoji=False, soft_wrap=True)
        task.printed_at, task.printed_step = now, self._step(task.total, task.completed)
        task.changed = False


@contextmanager
def progress_bar(
    enabled: bool = True, *, console: Console | None = None, every_s: float = 30.0
) -> Iterator[Progress | LogProgress | _Silent]:
    """Rich bars (count, elapsed, remaining, status) on a terminal; plain lines elsewhere.

    ``console`` defaults to rich's own (standard output); ``every_s`` is the longest gap between
    two plain lines of a moving task.
    """
    if not enabled:
        yield _Silent()
        return
    console = console or get_console()
    if not (console.is_terminal or console.is_jupyter):
        with LogProgress(console, every_s) as log:
            yield log
        return
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[status]}"),
    )
    with Progress(*columns, console=console, transient=False) as progress:
        original = progress.add_task

        def add_task(description: str, *args: object, **kwargs: object) -> int:
            kwargs.setdefault("status", "")
            return original(description, *args, **kwargs)

        progress.add_task = add_task  # type: ignore[method-assign]
        yield progress
