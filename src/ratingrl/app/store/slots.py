"""Which clips still need a rater: per-clip places, leases, and the indexed pick of a fresh clip.

A clip has ``ratings_per_clip`` places. A first-time item takes one while it is shown, for
:data:`SHOWN_LEASE_S` (its lease), and keeps it once rated; a skip, an undo of a rating or the
end of a lease gives it back. Instead of counting items for every clip at every request, each
queued clip has a :class:`~ratingrl.app.db.ClipSlot` row (``rated_count``, ``lease_count``,
``is_open``, its priority), changed in the transaction that takes or gives back a place, and
``queue_counters`` holds how many clips each project has open. So picking a rater's next clip
is a scan of the open-slots index in priority order that skips the clips this rater has seen
(one probe of their own items each), and counting what is left for them reads the counters and
their own items: neither grows with the project. (Both grow with the clips a rater has seen that
are still open -- skipped ones, or with ``ratings_per_clip`` above 1 those waiting for others.)

A lease that has run out is given back lazily, by the next request that picks a clip or counts
what is left (:func:`release_expired`), through the index on ``lease_until``.

On PostgreSQL, raters pick with ``FOR UPDATE SKIP LOCKED`` (a clip another transaction is
taking is passed over, not waited for) after locking their own rater row (so two requests of one
rater take turns), and the open-clip counter is sharded by rater, so concurrent raters seldom
wait on one row. SQLite runs one writer at a time, so none of that changes anything there.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Protocol

from sqlalchemy import Float, bindparam, exists, func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from ratingrl.app.models import ClipSlot, Project, QueueCounter, QueueItem, Rater, SegmentRow

__all__ = [
    "SHOWN_LEASE_S",
    "SHARDS",
    "Places",
    "lock_rater",
    "pick_fresh",
    "open_clips",
    "seen_open",
    "clips_added",
    "release_expired",
]

SHOWN_LEASE_S = 600.0
"""A clip shown to a rater counts towards ``ratings_per_clip`` for this long without an answer."""
SHARDS = 8
"""Rows per project in ``queue_counters``: a change goes to the row of ``rater id % SHARDS``."""
_EXPIRED_BATCH = 100


class _Who(Protocol):
    """A rater (a :class:`Rater` row or a request's context): the ids the queue reads."""

    id: int
    project_id: int


def _postgres(conn: Connection) -> bool:
    return conn.dialect.name == "postgresql"


# The queue's statements are built once, with bound parameters: a request executes them on its
# connection, without building and hashing an expression per statement.
_LOCK_RATER = select(Rater.id).where(Rater.id == bindparam("rater")).with_for_update()
_CHANGE = (
    update(ClipSlot)
    .where(ClipSlot.segment_id == bindparam("segment"))
    .values(
        rated_count=ClipSlot.rated_count + bindparam("rated"),
        lease_count=ClipSlot.lease_count + bindparam("leased"),
        is_open=ClipSlot.rated_count + bindparam("rated") + ClipSlot.lease_count
        + bindparam("leased")
        < bindparam("per_clip"),
    )
    .returning(ClipSlot.project_id, ClipSlot.rated_count, ClipSlot.lease_count, ClipSlot.is_open)
)


def _open_upsert(insert_of):  # type: ignore[no-untyped-def]
    statement = insert_of(QueueCounter).values(
        project_id=bindparam("project"), shard=bindparam("shard"), open_clips=bindparam("delta")
    )
    return statement.on_conflict_do_update(
        index_elements=[QueueCounter.project_id, QueueCounter.shard],
        set_={"open_clips": QueueCounter.open_clips + statement.excluded.open_clips},
    )


_ADD_OPEN = {"sqlite": _open_upsert(sqlite.insert), "postgresql": _open_upsert(postgresql.insert)}
_COUNTER = select(QueueCounter.open_clips).where(
    QueueCounter.project_id == bindparam("project"), QueueCounter.shard == bindparam("shard")
)
_EXPIRED = (
    select(QueueItem.id, QueueItem.segment_id, Project.ratings_per_clip)
    .join(ClipSlot, ClipSlot.segment_id == QueueItem.segment_id)
    .join(Project, Project.id == ClipSlot.project_id)
    .where(QueueItem.lease_until <= bindparam("now", type_=Float))
    .order_by(QueueItem.lease_until)  # the index's order: a range scan, no sort
    .limit(_EXPIRED_BATCH)
)
_EXPIRED_PG = _EXPIRED.with_for_update(skip_locked=True, of=QueueItem)  # others' are theirs
_RELEASE = (
    update(QueueItem)
    .where(QueueItem.id == bindparam("item"), QueueItem.lease_until.is_not(None))
    .values(lease_until=None)
)
_PICK = (
    select(ClipSlot.segment_id)
    .where(
        ClipSlot.project_id == bindparam("project"),
        ClipSlot.is_open.is_(True),
        ~exists().where(
            QueueItem.rater_id == bindparam("rater"),
            QueueItem.segment_id == ClipSlot.segment_id,
            QueueItem.is_repeat.is_(False),
        ),
    )
    .order_by(ClipSlot.priority.desc(), ClipSlot.segment_id)
    .limit(1)
)
_PICK_PG_SKIP = _PICK.with_for_update(skip_locked=True, of=ClipSlot)
_PICK_PG_WAIT = _PICK.with_for_update(of=ClipSlot)


def lock_rater(conn: Connection, rater: _Who) -> None:
    """Make this rater's concurrent requests take turns (PostgreSQL; SQLite has one writer).

    Called first by every change to a rater's queue: two requests asking for the next clip at
    once then meet the first one's item instead of each taking a different clip. A context
    read with ``lock=True`` holds the lock already.
    """
    if _postgres(conn) and not getattr(rater, "locked", False):
        conn.execute(_LOCK_RATER, {"rater": rater.id})


@dataclass
class Places:
    """The changes one request makes to clips' places; :meth:`settle` writes the open counts.

    Counter rows are written last (``settle``), in project order, so a transaction holding one
    waits for nothing else: lock order is rater, items, clips, counters.
    """

    shard: int
    opened: Counter = field(default_factory=Counter)

    @classmethod
    def of(cls, rater: _Who) -> Places:
        return cls(rater.id % SHARDS)

    def change(
        self, conn: Connection, segment_id: int, per_clip: int, rated: int = 0, leased: int = 0
    ) -> None:
        """Add ``rated`` / ``leased`` to a clip's counts and note whether it opened or closed."""
        params = {"segment": segment_id, "rated": rated, "leased": leased, "per_clip": per_clip}
        after = conn.execute(_CHANGE, params).one()
        was_open = after.rated_count - rated + after.lease_count - leased < per_clip
        self.opened[after.project_id] += int(bool(after.is_open)) - int(was_open)

    def settle(self, conn: Connection) -> None:
        """Write the open-clip count changes (one upsert per project that changed)."""
        for project_id in sorted(self.opened):
            if self.opened[project_id]:
                _add_open(conn, project_id, self.shard, self.opened[project_id])
        self.opened.clear()


def _add_open(conn: Connection, project_id: int, shard: int, delta: int) -> None:
    """``open_clips += delta`` on one counter row, created at 0 when missing."""
    params = {"project": project_id, "shard": shard, "delta": delta}
    upsert = _ADD_OPEN.get(conn.dialect.name)
    if upsert is not None:
        conn.execute(upsert, params)
        return
    # another database: read-then-write (both of ours run the upsert)
    if conn.execute(_COUNTER, params).first() is None:
        conn.execute(insert(QueueCounter).values(project_id=project_id, shard=shard, open_clips=0))
    conn.execute(
        update(QueueCounter)
        .where(QueueCounter.project_id == project_id, QueueCounter.shard == shard)
        .values(open_clips=QueueCounter.open_clips + delta)
    )


def clips_added(session: Session, project: Project, segments: list[SegmentRow]) -> None:
    """Queue new clips (flushed segment rows): each gets its slots, all open."""
    if not segments:
        return
    session.execute(
        insert(ClipSlot),
        [
            {"segment_id": s.id, "project_id": project.id, "priority": s.priority}
            for s in segments
        ],
    )
    _add_open(session.connection(), project.id, 0, len(segments))


def release_expired(conn: Connection, now: float, places: Places) -> int:
    """Give back the places of leases that ran out (any project); returns how many.

    The item stays shown to its rater (they may still answer it); its clip's place is free for
    others. Cheap when there is nothing to do: one probe of the ``lease_until`` index. The open
    counts change when the caller settles ``places``.
    """
    expired = conn.execute(_EXPIRED_PG if _postgres(conn) else _EXPIRED, {"now": now}).all()
    if not expired:
        return 0
    released = 0
    for item_id, segment_id, per_clip in sorted(expired, key=lambda row: row.segment_id):
        if conn.execute(_RELEASE, {"item": item_id}).rowcount:
            places.change(conn, segment_id, per_clip, leased=-1)
            released += 1
    return released


def pick_fresh(conn: Connection, rater: _Who) -> int | None:
    """The highest-priority open clip of the rater's project they have not seen (oldest
    first), or None.

    A scan of ``ix_clip_slots_open`` from the top that stops at the first clip the rater has no
    item for. On PostgreSQL the slot row is locked (others skip it) until the unit commits.
    """
    params = {"project": rater.project_id, "rater": rater.id}
    if _postgres(conn):
        picked = conn.execute(_PICK_PG_SKIP, params).scalar()
        if picked is not None:
            return picked
        # every candidate was being taken by someone else: wait for them rather than say none
        return conn.execute(_PICK_PG_WAIT, params).scalar()
    return conn.execute(_PICK, params).scalar()


def open_clips(project_id):  # type: ignore[no-untyped-def]
    """How many of the project's clips still need a rater (the counters' sum), as a subquery."""
    return (
        select(func.coalesce(func.sum(QueueCounter.open_clips), 0))
        .where(QueueCounter.project_id == project_id)
        .scalar_subquery()
    )


def seen_open(rater_id):  # type: ignore[no-untyped-def]
    """How many open clips the rater has a first-time item for, as a subquery.

    The project's open count less this is what is still queued for them (fresh clips they have
    not seen): a count that grows with the rater's items, not with the project's clips.
    """
    return (
        select(func.count(QueueItem.id))
        .join(ClipSlot, ClipSlot.segment_id == QueueItem.segment_id)
        .where(
            QueueItem.rater_id == rater_id,
            QueueItem.is_repeat.is_(False),
            ClipSlot.is_open.is_(True),
        )
        .scalar_subquery()
    )
