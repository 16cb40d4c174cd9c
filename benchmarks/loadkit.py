"""Pieces of the rating app's load test: a lean HTTP/1.1 client, the server process, the database.

The client is a few lines on asyncio streams (keep-alive, JSON bodies, ``Content-Length``
framing only, which is all the rating server sends for the API): one task per simulated rater
costs the load generator about a tenth of what httpx costs per request, so on a 2-core machine
the CPU goes to the server being measured. Only loopback addresses are ever used.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

HOST = "127.0.0.1"
OPERATOR = "bench-operator-token"
LAUNCH = "from ratingrl.cli import app; app()"


class HttpError(Exception):
    """The connection broke (server killed, restarting, or shutting down)."""


class Conn:
    """One keep-alive HTTP/1.1 connection to the server on loopback."""

    def __init__(self, port: int, token: str | None = None, timeout: float = 10.0) -> None:
        self.port, self.timeout = port, timeout
        self.auth = f"Authorization: Bearer {token}\r\n" if token else ""
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def request(self, method: str, path: str, body: dict | None = None) -> tuple[int, bytes]:
        """``(status, body)``; raises :class:`HttpError` when the connection fails."""
        try:
            return await asyncio.wait_for(self._request(method, path, body), self.timeout)
        except (OSError, asyncio.IncompleteReadError, asyncio.TimeoutError, ValueError) as err:
            self.close()
            raise HttpError(f"{method} {path}: {type(err).__name__}") from None

    async def _request(self, method: str, path: str, body: dict | None) -> tuple[int, bytes]:
        if self._writer is None:
            self._reader, self._writer = await asyncio.open_connection(HOST, self.port)
        data = b"" if body is None else json.dumps(body).encode()
        head = f"{method} {path} HTTP/1.1\r\nHost: {HOST}\r\n{self.auth}"
        if body is not None:
            head += f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n"
        self._writer.write(head.encode() + b"\r\n" + data)
        raw = await self._reader.readuntil(b"\r\n\r\n")
        status, length, close = int(raw[9:12]), 0, False
        for line in raw.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"connection" and value.strip().lower() == b"close":
                close = True
        payload = await self._reader.readexactly(length) if length else b""
        if close:
            self.close()
        return status, payload

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        self._reader = self._writer = None


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


class Server:
    """``ratingrl serve`` in its own process group, so a SIGKILL takes all of its workers."""

    def __init__(
        self, db_url: str, clip_dir: Path, port: int, workers: int = 1, extra: tuple = ()
    ) -> None:
        self.args = [sys.executable, "-c", LAUNCH, "serve", "--db", db_url, "--clip-dir"]
        self.args += [str(clip_dir), "--port", str(port), *extra]
        self.args += ["--workers", str(workers)] if workers != 1 else []
        self.port = port
        self.env = {**os.environ, "RATINGRL_OPERATOR_TOKEN": OPERATOR}
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 60.0) -> None:
        self.proc = subprocess.Popen(self.args, env=self.env, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}")
            try:
                with socket.create_connection((HOST, self.port), timeout=1) as s:
                    s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                    if s.recv(64).startswith(b"HTTP/1.1 200"):
                        return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("server did not start")

    def kill(self) -> None:
        """SIGKILL to the whole process group (every worker), like a power cut of the process."""
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def terminate(self, timeout: float = 30.0) -> float | None:
        """SIGTERM; seconds until the server exited, or None if it had not after ``timeout``."""
        if self.proc is None or self.proc.poll() is not None:
            return 0.0
        started = time.monotonic()
        self.proc.terminate()
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            return None
        return time.monotonic() - started


@dataclass
class Database:
    """A new database for one phase: a SQLite file, or a database of its own on a PostgreSQL
    server (``base`` is that server's URL; dropped by :meth:`drop`)."""

    url: str
    admin: str | None = None

    @classmethod
    def new(cls, base: str, workdir: Path, name: str) -> Database:
        if base == "sqlite":
            return cls(f"sqlite:///{workdir / f'{name}.db'}")
        engine = create_engine(base, isolation_level="AUTOCOMMIT", poolclass=NullPool)
        db_name = f"ratingrl_load_{name}_{os.getpid()}"
        with engine.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)')
            conn.exec_driver_sql(f'CREATE DATABASE "{db_name}"')
        url = make_url(base).set(database=db_name).render_as_string(hide_password=False)
        return cls(url, base)

    def stored_ratings(self) -> dict[str, int]:
        """``{clip_id: value}`` of every ``rated`` row, read through a connection of its own."""
        engine = create_engine(self.url, poolclass=NullPool)
        try:
            with engine.connect() as conn:
                rows = conn.execute(
                    text(
                        "SELECT q.public_id, r.value FROM ratings r "
                        "JOIN queue_items q ON q.id = r.item_id WHERE r.status = 'rated'"
                    )
                ).all()
        finally:
            engine.dispose()
        return {clip: value for clip, value in rows}

    def drop(self) -> None:
        if self.admin is None:
            return
        engine = create_engine(self.admin, isolation_level="AUTOCOMMIT", poolclass=NullPool)
        with engine.connect() as conn:
            name = make_url(self.url).database
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        engine.dispose()
