"""The rating database's engine and units of work (the tables are in :mod:`ratingrl.app.models`).

SQLite is the default (one file, no server): it runs in WAL mode with ``synchronous=FULL`` so a
rating acknowledged to a rater survives a crash of the server process *and* of the machine. A
unit of work says whether it writes: a writing unit starts with ``BEGIN IMMEDIATE``, taking
SQLite's one write lock up front, so concurrent writers queue on the busy timeout instead of
failing with "database is locked" when a read lock cannot be upgraded; a reading unit
(``write=False``: exports, the training source's polls, token checks) starts a plain deferred
transaction, which in WAL mode never waits for a writer and never makes one wait. Any other
SQLAlchemy URL (e.g. ``postgresql+psycopg://...``) is used as it is.

The schema is created and upgraded by the Alembic migrations in ``app/migrations`` (see
:func:`ratingrl.app.schema.upgrade_database`), never by ``create_all`` on a real database.
Store functions never commit: a caller groups them in one :func:`unit_of_work`, committed once
when the request or command is done. The models are re-exported here (``from ratingrl.app.db
import QueueItem`` keeps working).
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from ratingrl.app.models import (
    Asks,
    Base,
    ClipSlot,
    Delivery,
    ItemStatus,
    PairAnswerRow,
    PairChoice,
    PairItem,
    PairRow,
    PairSegmentRow,
    Project,
    QueueCounter,
    QueueItem,
    Rater,
    RatingRow,
    RatingStatus,
    SegmentRow,
)

__all__ = [
    "Base",
    "ItemStatus",
    "RatingStatus",
    "Project",
    "SegmentRow",
    "Rater",
    "QueueItem",
    "RatingRow",
    "ClipSlot",
    "QueueCounter",
    "Asks",
    "PairChoice",
    "PairSegmentRow",
    "PairRow",
    "PairItem",
    "PairAnswerRow",
    "Delivery",
    "make_engine",
    "make_sessionmaker",
    "unit_of_work",
    "WRITE_OPTION",
    "array_to_bytes",
    "bytes_to_array",
]


WRITE_OPTION = "ratingrl_write"
"""Execution option a connection carries: False when its transactions only read (deferred BEGIN)."""


def _sqlite_setup(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
        dbapi_connection.isolation_level = None  # we issue BEGIN ourselves (below)
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn) -> None:  # type: ignore[no-untyped-def]
        # a unit that only reads says so (unit_of_work(write=False)); everything else writes
        write = conn.get_execution_options().get(WRITE_OPTION, True)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


def make_engine(db_url: str) -> Engine:
    """An engine for ``db_url``; SQLite gets WAL, full sync, and write units take the lock first.

    It does not touch the schema: :func:`ratingrl.app.schema.open_database` also brings the
    database to the current revision, which is what the server, CLI and source use.
    """
    if db_url.startswith("sqlite"):
        engine = create_engine(
            db_url, connect_args={"check_same_thread": False, "timeout": 30}, pool_size=8
        )
        _sqlite_setup(engine)
    else:
        engine = create_engine(db_url, pool_pre_ping=True)
    return engine


def make_sessionmaker(engine: Engine) -> sessionmaker:
    """Sessions whose objects stay readable after commit (responses are built from them)."""
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def unit_of_work(sessions: sessionmaker, write: bool = True) -> Iterator[Session]:
    """One transaction around a request or command: committed if the block ends normally.

    Store functions only add and flush, so everything a request does is durable together or
    not at all: an exception anywhere in the block (a refused request, a crash half-way) rolls
    the whole unit back and propagates. When the block returns, the commit has happened, so a
    response sent afterwards never acknowledges something that is not stored.

    ``write=False`` is for units that only read (exports, polls, token checks): on SQLite they
    start a deferred transaction, so they neither take nor wait for the write lock. A unit that
    writes must keep the default: taking the lock first is what lets writers queue instead of
    failing when another connection wrote after their first read.
    """
    with sessions() as session:
        if not write:  # before the first statement: the option decides how BEGIN is issued
            session.connection(execution_options={WRITE_OPTION: False})
        try:
            yield session
        except BaseException:
            session.rollback()
            raise
        session.commit()


def array_to_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(array), allow_pickle=False)
    return buffer.getvalue()


def bytes_to_array(data: bytes) -> np.ndarray:
    return np.load(io.BytesIO(data), allow_pickle=False)
