"""``ratingrl serve`` as a real process on 127.0.0.1 under a crowd of bad-token requests.

The server used to freeze for good at about 41 simultaneous requests (a global lock taken on
AnyIO's 40-thread pool before the token was checked), and then ignore SIGTERM. Now a crowd of
bad tokens is answered 401 (or 503 when shed), ``/healthz`` and a real rater keep answering at
once, and SIGTERM stops the server within seconds, with requests still arriving.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections import Counter

import pytest

from ratingrl.app.demo import DemoSpec, seed_demo

OPERATOR = "operator-secret-token"
CROWD = 400  # ten times AnyIO's 40 threads


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def _request(port: int, method: str, path: str, token: str | None, body: bytes = b""):
    """One request on a new loopback connection: ``(status, json body, seconds)``; a request
    unanswered after 15 s fails the test (the frozen server never answered at all)."""
    return await asyncio.wait_for(_exchange(port, method, path, token, body), 15.0)


async def _exchange(port: int, method: str, path: str, token: str | None, body: bytes):
    started = time.monotonic()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        head = f"{method} {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n"
        if token:
            head += f"Authorization: Bearer {token}\r\n"
        if body:
            head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        writer.write(head.encode() + b"\r\n" + body)
        raw = await reader.read()
    finally:
        writer.close()
    head, _, payload = raw.partition(b"\r\n\r\n")
    return int(head[9:12]), json.loads(payload or b"null"), time.monotonic() - started


@pytest.fixture
def server(tmp_path):
    """A seeded database and ``ratingrl serve`` on a free port; yields (process, port, tokens)."""
    db = f"sqlite:///{tmp_path / 'ratings.db'}"
    tokens = seed_demo(db, DemoSpec(n_segments=50))
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-c", "from ratingrl.cli import app; app()", "serve", "--db", db,
         "--clip-dir", str(tmp_path / "clips"), "--port", str(port)],
        env={**os.environ, "RATINGRL_OPERATOR_TOKEN": OPERATOR},
        stderr=subprocess.PIPE,
    )  # fmt: skip
    deadline = time.monotonic() + 30
    while True:
        assert proc.poll() is None, proc.stderr.read().decode()
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                break
        except OSError:
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.05)
    yield proc, port, tokens
    if proc.poll() is None:
        proc.kill()
        proc.wait()


async def _rater_and_probe(port: int, token: str, crowd: asyncio.Future) -> list[float]:
    """``/healthz`` and a rater's next/rate, again and again until the crowd is answered."""
    seconds = []
    while not crowd.done():
        status, _, took = await _request(port, "GET", "/healthz", None)
        assert status == 200
        seconds.append(took)
        status, clip, took = await _request(port, "GET", "/api/next", token)
        assert status == 200
        seconds.append(took)
        body = json.dumps({"clip_id": clip["clip_id"], "rating": 2}).encode()
        status, _, took = await _request(port, "POST", "/api/ratings", token, body)
        assert status == 201
        seconds.append(took)
    return seconds


async def _crowd_beside_a_rater(port: int, token: str) -> tuple[Counter, list[float], int]:
    bad = [
        _request(port, "GET", "/api/next", f"bad-token-{i}")
        if i % 2
        else _request(port, "POST", "/api/ratings", "bad", b'{"clip_id": "x", "rating": 1}')
        for i in range(CROWD)
    ]
    crowd = asyncio.ensure_future(asyncio.gather(*bad))
    await asyncio.sleep(0.02)  # the crowd goes first
    real = await _rater_and_probe(port, token, crowd)
    answered = Counter(status for status, _, _ in await crowd)
    status, _, _ = await _request(port, "GET", "/healthz", None)
    return answered, real, status


@pytest.mark.slow
def test_a_crowd_of_bad_tokens_neither_freezes_the_server_nor_stops_raters(server):
    proc, port, tokens = server
    answered, real, health = asyncio.run(_crowd_beside_a_rater(port, tokens["alice"]))
    assert set(answered) <= {401, 503} and sum(answered.values()) == CROWD
    assert max(real) < 1.5, real  # healthz and the rater's requests, during the crowd
    assert health == 200  # and after it


async def _crowd_then_sigterm(proc: subprocess.Popen, port: int) -> tuple[float, Counter]:
    async def bad(i: int):  # type: ignore[no-untyped-def]
        try:
            return (await _request(port, "GET", "/api/next", f"bad-{i}"))[0]
        except (OSError, ValueError):  # refused or cut: the server is going away
            return "closed"

    crowd = asyncio.gather(*(bad(i) for i in range(CROWD)))
    await asyncio.sleep(0.05)
    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    await asyncio.to_thread(proc.wait, 20)
    exited = time.monotonic() - started
    return exited, Counter(await crowd)


@pytest.mark.slow
def test_sigterm_stops_the_server_within_seconds_during_a_crowd(server):
    proc, port, _tokens = server
    exited, answered = asyncio.run(_crowd_then_sigterm(proc, port))
    assert proc.returncode is not None
    assert exited < 8.0, exited  # uvicorn's graceful shutdown: 5 s at most for requests
    assert set(answered) <= {401, 503, "closed"}


@pytest.mark.slow
def test_sigterm_lets_a_rating_in_flight_finish_and_store(server, tmp_path):
    """Graceful shutdown: a POST waiting for the write lock when SIGTERM comes is answered 201
    once it gets the lock, and the rating is stored; then the server exits."""
    proc, port, tokens = server
    status, clip, _ = asyncio.run(_request(port, "GET", "/api/next", tokens["alice"]))
    assert status == 200
    holder = sqlite3.connect(tmp_path / "ratings.db", isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another writer (a CLI command, a training source)
    holder.execute("UPDATE projects SET instructions = instructions")
    body = json.dumps({"clip_id": clip["clip_id"], "rating": 3}).encode()

    async def rate_during_shutdown() -> tuple[int, float]:
        post = asyncio.ensure_future(_request(port, "POST", "/api/ratings", tokens["alice"], body))
        await asyncio.sleep(0.5)  # the rating waits for the lock on the writer thread
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        await asyncio.sleep(1.0)
        holder.rollback()  # the other writer is done: the rating goes through
        status, _, _ = await post
        await asyncio.to_thread(proc.wait, 20)
        return status, time.monotonic() - started

    status, exited = asyncio.run(rate_during_shutdown())
    holder.close()
    assert status == 201
    assert exited < 6.0, exited
    with sqlite3.connect(tmp_path / "ratings.db") as conn:
        stored = conn.execute("SELECT value FROM ratings WHERE status = 'rated'").fetchall()
    assert stored == [(3,)]
