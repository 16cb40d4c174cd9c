"""Bounded database work for the async rating server: a few threads, a short queue, then 503.

The server's endpoints are ``async``: parsing, checks and JSON run on the event loop, and every
database unit of work runs on a :class:`WorkGate`, a small pool of threads with a bound on the
work waiting for them. Work the gate cannot start soon is refused at once with
:class:`Overloaded` (HTTP 503 with ``Retry-After``) instead of queueing without bound:

* more than ``max_waiting`` jobs submitted and not finished: refused before it is queued;
* a job that waited longer than ``max_wait_s`` for a thread: refused when a thread reaches it,
  before it opens a transaction (the caller has waited long enough; nothing was done).

No request holds a lock across threads: the only lock is the counter's, held for an increment.
On SQLite all writes go through one gate of one thread, so they run one at a time in arrival
order without a lock of the app's and without sleeping in SQLite's busy handler; reads (token
checks, references, statistics) go through another gate and run beside the writer (WAL).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

__all__ = ["Overloaded", "WorkGate"]

T = TypeVar("T")


class Overloaded(Exception):
    """The server cannot take this request now; the client should retry after ``retry_after`` s."""

    def __init__(self, message: str, retry_after: int = 1) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class WorkGate:
    """A pool of ``threads`` threads for blocking work, refusing what it cannot start soon.

    ``name`` appears in refusals and thread names. ``max_waiting`` bounds the jobs submitted
    and not finished (running ones included); ``max_wait_s`` bounds how long one may wait for a
    thread. Both refusals raise :class:`Overloaded` in the caller, and neither ran the job.
    """

    def __init__(self, name: str, threads: int, max_waiting: int, max_wait_s: float) -> None:
        if threads < 1 or max_waiting < 1 or max_wait_s <= 0:
            raise ValueError(
                f"gate {name!r}: threads and max_waiting must be >= 1 and max_wait_s > 0, got "
                f"{threads}, {max_waiting}, {max_wait_s}"
            )
        self.name, self.threads = name, threads
        self.max_waiting, self.max_wait_s = max_waiting, max_wait_s
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix=f"ratingrl-{name}")
        self._count_lock = threading.Lock()  # guards one integer, never held across anything
        self._pending = 0
        self.refused = 0

    @property
    def pending(self) -> int:
        """Jobs submitted and not finished (queued or running)."""
        return self._pending

    async def run(self, fn: Callable[..., T], *args: object) -> T:
        """``fn(*args)`` on one of the gate's threads; raises :class:`Overloaded` when full."""
        with self._count_lock:
            if self._pending >= self.max_waiting:
                self.refused += 1
                raise Overloaded(
                    f"server busy: {self._pending} {self.name} requests waiting; retry shortly"
                )
            self._pending += 1
        queued = time.monotonic()

        def job() -> T:
            waited = time.monotonic() - queued
            if waited > self.max_wait_s:  # the caller gave up waiting: do nothing for it
                with self._count_lock:
                    self.refused += 1
                raise Overloaded(
                    f"server busy: waited {waited:.1f} s for a {self.name} thread; retry shortly"
                )
            return fn(*args)

        try:
            future = self._pool.submit(job)
        except RuntimeError:  # shut down: the server is stopping
            self._release(None)
            raise Overloaded("server is shutting down", retry_after=5) from None
        future.add_done_callback(self._release)  # also when cancelled before it ran
        return await asyncio.wrap_future(future)

    def _release(self, _future: Future | None) -> None:
        with self._count_lock:
            self._pending -= 1

    def close(self) -> None:
        """Drop the jobs not started yet and let running ones finish (server shutdown)."""
        self._pool.shutdown(wait=True, cancel_futures=True)
