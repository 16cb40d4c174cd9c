"""The rating server under pressure, in one process: it sheds what it cannot start (503 with
Retry-After), reads never wait for SQLite's write lock, malformed numbers are 422 and change
nothing, and an export reaches the disk before its name does."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import threading
import time

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text
from typer.testing import CliRunner

from ratingrl.app import store
from ratingrl.app.demo import DemoSpec, seed_demo
from ratingrl.app.gate import GroupCommitGate, Overloaded, WorkGate
from ratingrl.app.schema import open_database
from ratingrl.app.server import ServerConfig, create_app

OPERATOR = "operator-secret-token"


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _snapshot(run_sql, db: str) -> tuple:
    ratings = run_sql(db, "SELECT * FROM ratings ORDER BY id")
    items = run_sql(db, "SELECT id, status, shown_at FROM queue_items ORDER BY id")
    return ratings, items


@pytest.fixture
def serve(tmp_path):
    """``serve(db_url, **config)`` -> a TestClient of a seeded app and the raters' tokens."""
    clients: list[TestClient] = []

    def build(db: str, **config) -> tuple[TestClient, dict[str, str]]:
        tokens = seed_demo(db, DemoSpec())
        client = TestClient(create_app(db, tmp_path / "clips", OPERATOR, ServerConfig(**config)))
        client.__enter__()
        clients.append(client)
        return client, tokens

    yield build
    for client in clients:
        client.__exit__(None, None, None)


@pytest.fixture
def write_lock_held(tmp_path):
    """``hold(db_path)``: another connection takes SQLite's write lock (an uncommitted write)
    until the test ends, as ``ratingrl app add-segments`` or a training source would."""
    held: list[sqlite3.Connection] = []

    def hold(path) -> sqlite3.Connection:
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("UPDATE projects SET instructions = instructions")
        held.append(conn)
        return conn

    yield hold
    for conn in held:
        conn.rollback()
        conn.close()


def _wait_until(condition, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.01)


# -- the gate -----------------------------------------------------------------------------------
def test_a_full_gate_refuses_at_once_and_a_late_job_never_runs():
    gate = WorkGate("write", threads=1, max_waiting=2, max_wait_s=0.2)
    release = threading.Event()
    ran: list[str] = []

    async def scenario() -> list:
        blocker = asyncio.ensure_future(gate.run(release.wait, 5))
        late = asyncio.ensure_future(gate.run(ran.append, "late"))  # queued behind the blocker
        await asyncio.sleep(0.05)
        assert gate.pending == 2
        started = time.monotonic()
        with pytest.raises(Overloaded, match="2 write requests waiting"):
            await gate.run(ran.append, "refused")
        assert time.monotonic() - started < 0.05  # refused without waiting
        await asyncio.sleep(0.3)  # longer than max_wait_s
        release.set()
        return await asyncio.gather(blocker, late, return_exceptions=True)

    blocker, late = asyncio.run(scenario())
    gate.close()
    assert blocker is True
    assert isinstance(late, Overloaded) and "waited" in str(late)
    assert ran == []  # neither the refused job nor the late one ran
    assert gate.pending == 0 and gate.refused == 2


def test_a_request_beyond_the_limit_is_503_with_retry_after_and_changes_nothing(
    tmp_path, serve, write_lock_held, run_sql
):
    db_path = tmp_path / "ratings.db"
    db = f"sqlite:///{db_path}"
    client, tokens = serve(db, max_waiting=1)
    h = auth(tokens["alice"])
    clip = client.get("/api/next", headers=h).json()["clip_id"]
    before = _snapshot(run_sql, db)
    lock = write_lock_held(db_path)
    first: list = []
    in_flight = threading.Thread(
        target=lambda: first.append(
            client.post("/api/ratings", json={"clip_id": clip, "rating": 1}, headers=h)
        )
    )
    in_flight.start()
    writes = client.app.state.services.writes
    _wait_until(lambda: writes.pending == 1)  # waiting for the write lock on the writer thread
    started = time.monotonic()
    shed = client.post("/api/undo", headers=auth(tokens["bob"]))
    assert time.monotonic() - started < 2.0
    assert shed.status_code == 503
    assert shed.headers["retry-after"] == "1"
    assert "busy" in shed.json()["detail"]
    assert client.get("/healthz").status_code == 200  # never behind the database
    lock.rollback()  # the other writer finishes: the queued rating goes through
    in_flight.join(30)
    assert first[0].status_code == 201
    ratings, _items = _snapshot(run_sql, db)
    assert len(ratings) == len(before[0]) + 1  # only the acknowledged rating


def test_writes_that_wait_together_share_one_commit_and_a_refused_one_is_rolled_back_alone(
    tmp_path, write_lock_held
):
    db_path = tmp_path / "ratings.db"
    db = f"sqlite:///{db_path}"
    seed_demo(db, DemoSpec())
    database = open_database(db)
    gate = GroupCommitGate("write", database.unit, max_waiting=100, max_wait_s=30)
    seen_when_answered: list[list[str]] = []

    def rename(session, old: str, new: str) -> str:
        statement = text("UPDATE raters SET name = :new WHERE name = :old")
        session.execute(statement, {"new": new, "old": old})
        if new == "refused":
            raise store.Conflict("no")
        return new

    def stored() -> list[str]:  # what another connection sees
        with sqlite3.connect(db_path) as conn:
            return sorted(r[0] for r in conn.execute("SELECT name FROM raters"))

    async def scenario() -> list:
        lock = write_lock_held(db_path)
        first = asyncio.ensure_future(gate.run(rename, "alice", "alice-1"))  # waits for the lock
        await asyncio.sleep(0.1)
        refused = asyncio.ensure_future(gate.run(rename, "bob", "refused"))
        last = asyncio.ensure_future(gate.run(rename, "alice-1", "alice-2"))
        last.add_done_callback(lambda _: seen_when_answered.append(stored()))
        await asyncio.sleep(0.1)
        lock.rollback()
        return await asyncio.gather(first, refused, last, return_exceptions=True)

    try:
        first, refused, last = asyncio.run(scenario())
    finally:
        gate.close()
        database.close()
    assert first == "alice-1" and last == "alice-2"
    assert isinstance(refused, store.Conflict)
    assert seen_when_answered == [["alice-2", "bob"]]  # committed before answered; bob's undone
    assert gate.batches == 2  # the first alone, then the two that waited, in one commit
    assert gate.pending == 0


def test_a_failed_group_commit_fails_each_of_its_writes_and_the_writer_goes_on(tmp_path):
    from contextlib import contextmanager

    db = f"sqlite:///{tmp_path / 'ratings.db'}"
    seed_demo(db, DemoSpec())
    database = open_database(db)
    release = threading.Event()

    @contextmanager
    def unit():
        with database.unit() as session:
            yield session
            if session.info.get("doomed"):  # fails at its end, as a refused commit would
                raise OSError("disk I/O error at commit")

    def blocker(_session) -> None:  # keeps the writer busy while two writes queue
        release.wait(5)

    def rename(session, suffix: str) -> None:
        session.execute(text("UPDATE raters SET name = name || :s"), {"s": suffix})
        session.info["doomed"] = True

    def names(session) -> list[str]:
        return sorted(session.scalars(text("SELECT name FROM raters")).all())

    gate = GroupCommitGate("write", unit, max_waiting=100, max_wait_s=30)

    async def scenario() -> list:
        busy = asyncio.ensure_future(gate.run(blocker))
        await asyncio.sleep(0.05)
        batch = [asyncio.ensure_future(gate.run(rename, s)) for s in ("!", "?")]
        await asyncio.sleep(0.05)
        release.set()
        await busy
        return await asyncio.gather(*batch, return_exceptions=True) + [await gate.run(names)]

    try:
        first, second, after = asyncio.run(scenario())
    finally:
        gate.close()
        database.close()
    assert isinstance(first, OSError) and first is second  # one transaction, one failure
    assert gate.batches == 3  # the blocker, the failed pair, the read after it
    assert after == ["alice", "bob"]  # nothing of the failed transaction was stored


# -- reads and the write lock -------------------------------------------------------------------
def test_reads_run_while_another_connection_holds_the_write_lock(
    tmp_path, serve, write_lock_held
):
    db_path = tmp_path / "ratings.db"
    db = f"sqlite:///{db_path}"
    client, tokens = serve(db)
    h = auth(tokens["alice"])
    clip = client.get("/api/next", headers=h).json()["clip_id"]
    assert client.post("/api/ratings", json={"clip_id": clip, "rating": 2}, headers=h)
    write_lock_held(db_path)
    probe = sqlite3.connect(db_path, timeout=0.05, isolation_level=None)
    with pytest.raises(sqlite3.OperationalError, match="locked"):  # the lock really is held
        probe.execute("BEGIN IMMEDIATE")
    probe.close()

    started = time.monotonic()
    with open_database(db) as database:  # opening a database at head reads its revision only
        with database.unit(write=False) as session:
            assert store.get_project(session).name == "demo"
    assert client.get("/api/references", headers=h).status_code == 200
    bad = client.post("/api/ratings", json={"clip_id": clip, "rating": 1}, headers=auth("nope"))
    assert bad.status_code == 401  # a bad token is refused without waiting for the writer
    from ratingrl.cli import app

    out = tmp_path / "export.parquet"
    result = CliRunner().invoke(app, ["app", "export", "--db", db, "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert time.monotonic() - started < 5.0  # not the 30 s busy timeout


def test_a_write_unit_still_takes_the_lock_first(tmp_path):
    db = f"sqlite:///{tmp_path / 'ratings.db'}"
    seed_demo(db, DemoSpec())
    with open_database(db) as database, database.unit() as session:
        store.get_project(session)  # a read inside a writing unit: the lock is already taken
        probe = sqlite3.connect(tmp_path / "ratings.db", timeout=0.05, isolation_level=None)
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            probe.execute("BEGIN IMMEDIATE")
        probe.close()


# -- malformed numbers --------------------------------------------------------------------------
MALFORMED = ["NaN", "Infinity", "-Infinity", "1e400", "-1e400", str(2**64), str(-(10**100)),
             str(2**63), str(2**31 + 7), "2.0e0", "1.5"]  # fmt: skip


def test_malformed_numbers_are_422_with_a_json_body_and_change_nothing(serve, db_url, run_sql):
    client, tokens = serve(db_url)
    h = {**auth(tokens["alice"]), "Content-Type": "application/json"}
    clip = client.get("/api/next", headers=h).json()["clip_id"]
    before = _snapshot(run_sql, db_url)
    for number in MALFORMED:
        body = f'{{"clip_id": "{clip}", "rating": {number}}}'.encode()
        response = client.post("/api/ratings", content=body, headers=h)
        assert response.status_code == 422, (number, response.text)
        detail = response.json()["detail"]
        assert isinstance(detail, str) and detail.startswith("rating: "), (number, detail)
        assert number not in detail and "\n" not in detail  # the input is not echoed
    assert _snapshot(run_sql, db_url) == before
    ok = client.post("/api/ratings", json={"clip_id": clip, "rating": 3}, headers=h)
    assert ok.status_code == 201  # the clip is still open: nothing was half-stored


@pytest.mark.parametrize("value", [2**64, -(10**100), 2**63])
def test_the_store_refuses_huge_ratings_with_an_app_error(tmp_path, value):
    db = f"sqlite:///{tmp_path / 'ratings.db'}"
    tokens = seed_demo(db, DemoSpec())
    with open_database(db) as database:
        with database.unit() as session:
            rater = store.rater_for_token(session, tokens["alice"])
            clip = store.next_item(session, rater).public_id
        with pytest.raises(store.AppError, match="far outside the scale 0..3"):
            with database.unit() as session:
                store.submit(session, store.rater_for_token(session, tokens["alice"]), clip, value)


# -- exports ------------------------------------------------------------------------------------
def test_an_export_is_synced_before_and_after_its_rename(tmp_path, serve, monkeypatch):
    import pyarrow.parquet as pq

    from ratingrl.app.export import export_ratings
    from ratingrl.feedback.io import load_rated

    db = f"sqlite:///{tmp_path / 'ratings.db'}"
    client, tokens = serve(db)
    for name in ("alice", "bob"):
        h = auth(tokens[name])
        for value in (0, 3):
            clip = client.get("/api/next", headers=h).json()["clip_id"]
            client.post("/api/ratings", json={"clip_id": clip, "rating": value}, headers=h)
    out = tmp_path / "exports" / "ratings.parquet"
    out.parent.mkdir()
    out.write_bytes(b"the previous export")
    synced: list[tuple[str, bool]] = []  # (what the descriptor is, does `out` exist as new?)
    real_fsync = os.fsync

    def spy(fd: int) -> None:
        path = os.readlink(f"/proc/self/fd/{fd}")
        synced.append((path, out.read_bytes() == b"the previous export"))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", spy)
    with open_database(db) as database, database.unit(write=False) as session:
        assert export_ratings(session, store.get_project(session), out) == 4
    tmp_synced, dir_synced = synced[0], synced[-1]
    assert os.path.basename(tmp_synced[0]).startswith(".ratings.parquet.")
    assert tmp_synced[1]  # the new bytes were synced while the old file still had the name
    assert dir_synced[0] == str(out.parent.resolve()) and not dir_synced[1]  # then the folder
    assert len(load_rated(out)) == 4 and pq.read_table(out).num_rows == 4
    assert sorted(p.name for p in out.parent.iterdir()) == ["ratings.parquet"]  # no leftovers


def test_a_failed_export_leaves_the_previous_file(tmp_path, serve, monkeypatch):
    import pyarrow.parquet as pq

    from ratingrl.app import export

    db = f"sqlite:///{tmp_path / 'ratings.db'}"
    client, tokens = serve(db)
    h = auth(tokens["alice"])
    clip = client.get("/api/next", headers=h).json()["clip_id"]
    client.post("/api/ratings", json={"clip_id": clip, "rating": 1}, headers=h)
    out = tmp_path / "ratings.parquet"
    out.write_bytes(b"the previous export")

    def disk_full(*_args, **_kwargs):
        raise OSError("No space left on device")

    monkeypatch.setattr(pq, "write_table", disk_full)
    with open_database(db) as database, database.unit(write=False) as session:
        with pytest.raises(OSError, match="No space"):
            export.export_ratings(session, store.get_project(session), out)
    assert out.read_bytes() == b"the previous export"
    assert [p.name for p in tmp_path.glob(".ratings.parquet.*")] == []


# -- the serve command --------------------------------------------------------------------------
def test_serve_refuses_workers_on_sqlite_and_bad_limits(tmp_path):
    from ratingrl.cli import app

    db = f"sqlite:///{tmp_path / 'ratings.db'}"
    result = CliRunner().invoke(app, ["serve", "--db", db, "--workers", "2"])
    assert result.exit_code == 2
    assert "--workers 2 needs PostgreSQL" in " ".join(result.output.split())
    assert not (tmp_path / "ratings.db").exists()  # refused before anything was opened
    result = CliRunner().invoke(app, ["serve", "--db", db, "--max-waiting", "0"])
    assert result.exit_code == 2 and "--max-waiting" in result.output


def test_the_worker_factory_needs_its_environment(monkeypatch):
    from ratingrl.app.server import SERVE_ENV, app_from_environment

    for name in SERVE_ENV.values():
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(RuntimeError, match=SERVE_ENV["db"]):
        app_from_environment()


@pytest.mark.parametrize(
    ("field", "value"),
    [("max_waiting", 0), ("max_wait_s", 0), ("group_commit", True), ("read_threads", "2")],
)
def test_server_limits_are_checked_naming_the_field(field, value):
    with pytest.raises(ValueError, match=f"ServerConfig.{field} must be a number"):
        ServerConfig(**{field: value})
    assert ServerConfig(max_wait_s=0.5, max_waiting=1).max_wait_s == 0.5
