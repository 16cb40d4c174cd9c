"""Bounded database work for the async rating server: a few threads, a short queue, then 503.

The server's endpoints are ``async``: parsing, checks and JSON run on the event loop, and every
database unit of work runs on a gate, a small pool of threads with a bound on the work waiting
for them. Work a gate cannot start soon is refused at once with :class:`Overloaded` (HTTP 503
with ``Retry-After``) instead of queueing without bound:

* more than ``max_waiting`` jobs submitted and not finished: refused before it is queued;
* a job that waited longer than ``max_wait_s`` for a thread: refused when a thread reaches it,
  before it opens a transaction (the caller has waited long enough; nothing was done).

No request holds a lock across threads: the only lock is the counter's, held for an increment.
Given ``unit`` (a function opening a unit of work), a gate runs ``fn(session, *args)`` in one.

:class:`GroupCommitGate` is the writer of SQLite, which takes one writer at a time: one thread
runs the writes in arrival order, without a lock of the app's and without sleeping in SQLite's
busy handler. The writes that arrived while it was committing go into the next transaction
together, and one commit -- one fsync -- makes all of them durable before any of them is
answered. A write refused before it changed anything (most refusals: an unknown clip, a bad
token) is refused alone; should one fail after changing something, the transaction is rolled
back and the writes run again, each in a savepoint of its own (a refused one is rolled back
alone). Savepoints cost as much as a request's statements: they are paid only then.
"""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import AbstractContextManager
from typing import Any, TypeVar

from sqlalchemy.orm import Session

__all__ = ["Overloaded", "WorkGate", "GroupCommitGate"]

T = TypeVar("T")
Unit = Callable[[], AbstractContextManager[Session]]


class Overloaded(Exception):
    """The server cannot take this request now; the client should retry after ``retry_after`` s."""

    def __init__(self, message: str, retry_after: int = 1) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class _Gate:
    """What every gate shares: admission (the bound on waiting work) and the deadline."""

    def __init__(self, name: str, threads: int, max_waiting: int, max_wait_s: float) -> None:
        if threads < 1 or max_waiting < 1 or max_wait_s <= 0:
            raise ValueError(
                f"gate {name!r}: threads and max_waiting must be >= 1 and max_wait_s > 0, got "
                f"{threads}, {max_waiting}, {max_wait_s}"
            )
        self.name, self.threads = name, threads
        self.max_waiting, self.max_wait_s = max_waiting, max_wait_s
        self._count_lock = threading.Lock()  # guards two integers, never held across anything
        self._pending = 0
        self.refused = 0

    @property
    def pending(self) -> int:
        """Jobs submitted and not finished (queued or running)."""
        return self._pending

    def _admit(self) -> float:
        with self._count_lock:
            if self._pending >= self.max_waiting:
                self.refused += 1
                raise Overloaded(
                    f"server busy: {self._pending} {self.name} requests waiting; retry shortly"
                )
            self._pending += 1
        return time.monotonic()

    def _release(self, _future: Future | None = None) -> None:
        with self._count_lock:
            self._pending -= 1

    def _too_late(self, queued: float) -> Overloaded | None:
        waited = time.monotonic() - queued
        if waited <= self.max_wait_s:
            return None
        with self._count_lock:
            self.refused += 1
        return Overloaded(f"server busy: waited {waited:.1f} s for a {self.name} thread")


class WorkGate(_Gate):
    """A pool of ``threads`` threads for blocking work, refusing what it cannot start soon.

    ``name`` appears in refusals and thread names. ``max_waiting`` bounds the jobs submitted
    and not finished (running ones included); ``max_wait_s`` bounds how long one may wait for a
    thread. Both refusals raise :class:`Overloaded` in the caller, and neither ran the job.
    """

    def __init__(
        self, name: str, threads: int, max_waiting: int, max_wait_s: float, unit: Unit | None = None
    ) -> None:
        super().__init__(name, threads, max_waiting, max_wait_s)
        self._unit = unit
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix=f"ratingrl-{name}")

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` (or ``fn(session, *args)`` in a unit) on one of the gate's threads."""
        queued = self._admit()

        def job() -> T:
            late = self._too_late(queued)
            if late is not None:  # the caller gave up waiting: do nothing for it
                raise late
            if self._unit is None:
                return fn(*args)
            with self._unit() as session:
                return fn(session, *args)

        try:
            future = self._pool.submit(job)
        except RuntimeError:  # shut down: the server is stopping
            self._release()
            raise Overloaded("server is shutting down", retry_after=5) from None
        future.add_done_callback(self._release)  # also when cancelled before it ran
        return await asyncio.wrap_future(future)

    def close(self) -> None:
        """Drop the jobs not started yet and let running ones finish (server shutdown)."""
        self._pool.shutdown(wait=True, cancel_futures=True)


class _Job:
    __slots__ = ("fn", "args", "queued", "future")

    def __init__(self, fn: Callable[..., Any], args: tuple, queued: float) -> None:
        self.fn, self.args, self.queued = fn, args, queued
        self.future: Future = Future()


class GroupCommitGate(_Gate):
    """One thread running ``fn(session, *args)`` jobs, those waiting together in one commit.

    A job that raises gets its exception and changes nothing stored: refused before it changed
    anything, it is passed over; otherwise the unit is rolled back and run again with each job
    in a savepoint, rolled back alone. The others are committed together, and only then does
    any of them get its result, so nothing is answered before it is durable. At most
    ``max_batch`` jobs share a transaction. Should the transaction itself fail (the lock not
    had, the commit refused), every job of it gets that error: none of them was stored, none
    is acknowledged.
    """

    def __init__(
        self, name: str, unit: Unit, max_waiting: int, max_wait_s: float, max_batch: int = 64
    ) -> None:
        super().__init__(name, 1, max_waiting, max_wait_s)
        self._unit, self.max_batch = unit, max_batch
        self._queue: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self.batches = 0
        self._closed = False
        self._thread = threading.Thread(target=self._serve, name=f"ratingrl-{name}", daemon=True)
        self._thread.start()

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(session, *args)`` in a savepoint of the next group commit; its result after it."""
        if self._closed:
            raise Overloaded("server is shutting down", retry_after=5)
        job = _Job(fn, args, self._admit())
        job.future.add_done_callback(self._release)
        self._queue.put(job)
        return await asyncio.wrap_future(job.future)

    def _serve(self) -> None:
        self._serve_batches()
        while True:  # closed: refuse what came after the end (none should, the server stopped)
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                return
            if job is not None and job.future.set_running_or_notify_cancel():
                job.future.set_exception(Overloaded("server is shutting down", retry_after=5))

    def _serve_batches(self) -> None:
        while (first := self._queue.get()) is not None:
            batch = [first]
            while len(batch) < self.max_batch:
                try:
                    job = self._queue.get_nowait()
                except queue.Empty:
                    break
                if job is None:
                    self._queue.put(None)  # close() after this batch
                    break
                batch.append(job)
            self._commit([j for j in batch if self._startable(j)])

    def _startable(self, job: _Job) -> bool:
        if not job.future.set_running_or_notify_cancel():
            return False  # cancelled while queued
        late = self._too_late(job.queued)
        if late is not None:
            job.future.set_exception(late)
            return False
        return True

    def _commit(self, batch: list[_Job]) -> None:
        if not batch:
            return
        self.batches += 1
        if len(batch) == 1:  # alone: its own unit, no savepoint to pay for
            self._alone(batch[0])
            return
        try:
            outcomes = self._together(batch)
        except BaseException as err:  # the unit failed (lock, commit): nothing of it is stored
            for job in batch:  # (and the thread goes on: a dead writer would hang every write)
                job.future.set_exception(err)
            return
        for job, result, err in outcomes:  # committed: now the answers may go out
            if err is None:
                job.future.set_result(result)
            else:
                job.future.set_exception(err)

    def _together(self, batch: list[_Job]) -> list[tuple[_Job, Any, BaseException | None]]:
        """Run the batch in one unit; a job that fails having changed something makes it run
        again, each job in a savepoint (see :func:`_run_plain`). Returns once committed."""
        try:
            with self._unit() as session:
                return _run_plain(session, batch)
        except _Tainted:  # rolled back: nothing of the first run is stored
            pass
        with self._unit() as session:
            return _run_in_savepoints(session, batch)

    def _alone(self, job: _Job) -> None:
        try:
            with self._unit() as session:
                result = job.fn(session, *job.args)
        except BaseException as err:
            job.future.set_exception(err)
        else:
            job.future.set_result(result)

    def close(self) -> None:
        """Finish the jobs queued so far, then stop the thread (server shutdown)."""
        self._closed = True
        self._queue.put(None)
        self._thread.join(timeout=10)  # a daemon: a write stuck on a lock does not hold the exit


class _Tainted(Exception):
    """A job of a shared unit failed after it had changed something: the unit is rolled back."""


def _changes_of(session: Session) -> Callable[[], int | None]:
    """A function counting the rows the unit's connection has changed (SQLite's
    ``total_changes``); it returns None where the driver does not say."""
    driver = session.connection().connection.dbapi_connection
    return lambda: getattr(driver, "total_changes", None)


def _run_plain(session: Session, batch: list[_Job]) -> list[tuple[_Job, Any, BaseException | None]]:
    """Each job in turn, without savepoints; a refused job that changed nothing is just refused.

    Most refusals (an unknown clip, an answer to change, a bad token) come before a job writes:
    the job's exception is its outcome and the others go on in the same transaction. A job
    that fails after a change it made (a row written, an object pending in the session) raises
    :class:`_Tainted`, so the unit is rolled back and run again with savepoints.
    """
    changes = _changes_of(session)
    outcomes: list[tuple[_Job, Any, BaseException | None]] = []
    for job in batch:
        before = changes()
        try:
            outcomes.append((job, job.fn(session, *job.args), None))
        except Exception as err:
            changed = before is None or changes() != before
            if changed or session.new or session.dirty or session.deleted:
                raise _Tainted from err
            outcomes.append((job, None, err))
    return outcomes


def _run_in_savepoints(
    session: Session, batch: list[_Job]
) -> list[tuple[_Job, Any, BaseException | None]]:
    """Each job in a savepoint of its own: one that raises is rolled back alone."""
    outcomes: list[tuple[_Job, Any, BaseException | None]] = []
    for job in batch:
        try:
            with session.begin_nested():
                outcomes.append((job, job.fn(session, *job.args), None))
        except Exception as err:  # refused: its savepoint is rolled back
            outcomes.append((job, None, err))
    return outcomes
