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

from sqlalchemy import exists, func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from ratingrl.app.db import ClipSlot, Project, QueueCounter, QueueItem, Rater, SegmentRow

__all__ = [
    "SHOWN_LEASE_S",
    "SHARDS",
    "Places",
    "lock_rater",
    "pick_fresh",
    "open_clips",
    "open_for",
    "clips_added",
    "release_expired",
    "release_lease",
]

SHOWN_LEASE_S = 600.0
"""A clip shown to a rater counts towards ``ratings_per_clip`` for this long without an answer."""
SHARDS = 8
"""Rows per project in ``queue_counters``: a change goes to the row of ``rater id % SHARDS``."""
_EXPIRED_BATCH = 100


def _postgres(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def lock_rater(session: Session, rater: Rater) -> None:
    """Make this rater's concurrent requests take turns (PostgreSQL; SQLite has one writer).

    Called first by every change to a rater's queue: two requests asking for the next clip at
    once then meet the first one's item instead of each taking a different clip.
    """
    if _postgres(session):
        session.execute(select(Rater.id).where(Rater.id == rater.id).with_for_update())


@dataclass
class Places:
    """The changes one request makes to clips' places; :meth:`settle` writes the open counts.

    Counter rows are written last (``settle``), in project order, so a transaction holding one
    waits for nothing else: lock order is rater, items, clips, counters.
    """

    shard: int
    opened: Counter = field(default_factory=Counter)

    @classmethod
    def of(cls, rater: Rater) -> Places:
        return cls(rater.id % SHARDS)

    def change(
        self, session: Session, segment_id: int, per_clip: int, rated: int = 0, leased: int = 0
    ) -> None:
        """Add ``rated`` / ``leased`` to a clip's counts and note whether it opened or closed."""
        after = session.execute(
            update(ClipSlot)
            .where(ClipSlot.segment_id == segment_id)
            .values(
                rated_count=ClipSlot.rated_count + rated,
                lease_count=ClipSlot.lease_count + leased,
                is_open=ClipSlot.rated_count + rated + ClipSlot.lease_count + leased < per_clip,
            )
            .returning(
                ClipSlot.project_id, ClipSlot.rated_count, ClipSlot.lease_count, ClipSlot.is_open
            )
            .execution_options(synchronize_session=False)
        ).one()
        was_open = after.rated_count - rated + after.lease_count - leased < per_clip
        self.opened[after.project_id] += int(bool(after.is_open)) - int(was_open)

    def settle(self, session: Session) -> None:
        """Write the open-clip count changes (one upsert per project that changed)."""
        for project_id in sorted(self.opened):
            if self.opened[project_id]:
                _add_open(session, project_id, self.shard, self.opened[project_id])
        self.opened.clear()


def _add_open(session: Session, project_id: int, shard: int, delta: int) -> None:
    """``open_clips += delta`` on one counter row, created at 0 when missing."""
    dialect = session.get_bind().dialect.name
    upsert = {"postgresql": postgresql.insert, "sqlite": sqlite.insert}.get(dialect)
    if upsert is None:  # another database: read-then-write (both ours run the upsert)
        row = session.get(QueueCounter, (project_id, shard))
        if row is None:
            session.add(QueueCounter(project_id=project_id, shard=shard, open_clips=delta))
        else:
            row.open_clips += delta
        session.flush()
        return
    statement = upsert(QueueCounter).values(project_id=project_id, shard=shard, open_clips=delta)
    session.execute(
        statement.on_conflict_do_update(
            index_elements=[QueueCounter.project_id, QueueCounter.shard],
            set_={"open_clips": QueueCounter.open_clips + delta},
        )
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
    _add_open(session, project.id, 0, len(segments))


def release_expired(session: Session, now: float, places: Places) -> int:
    """Give back the places of leases that ran out (any project); returns how many.

    The item stays shown to its rater (they may still answer it); its clip's place is free for
    others. Cheap when there is nothing to do: one probe of the ``lease_until`` index. The open
    counts change when the caller settles ``places``.
    """
    query = (
        select(QueueItem.id, QueueItem.segment_id, Project.ratings_per_clip)
        .join(ClipSlot, ClipSlot.segment_id == QueueItem.segment_id)
        .join(Project, Project.id == ClipSlot.project_id)
        .where(QueueItem.lease_until <= now)
        .order_by(QueueItem.lease_until)  # the index's order: a range scan, no sort
        .limit(_EXPIRED_BATCH)
    )
    if _postgres(session):  # another request is giving these back: leave them to it
        query = query.with_for_update(skip_locked=True, of=QueueItem)
    expired = session.execute(query).all()
    if not expired:
        return 0
    released = 0
    for item_id, segment_id, per_clip in sorted(expired, key=lambda row: row.segment_id):
        if release_lease(session, item_id):
            places.change(session, segment_id, per_clip, leased=-1)
            released += 1
    return released


def release_lease(session: Session, item_id: int) -> bool:
    """Clear an item's lease; True when it held one (so its clip's ``lease_count`` drops)."""
    return bool(
        session.execute(
            update(QueueItem)
            .where(QueueItem.id == item_id, QueueItem.lease_until.is_not(None))
            .values(lease_until=None)
            .execution_options(synchronize_session=False)
        ).rowcount
    )


def _unseen_open(project: Project, rater: Rater):
    """Conditions: the project's open clips this rater has no first-time item for."""
    seen = exists().where(
        QueueItem.rater_id == rater.id,
        QueueItem.segment_id == ClipSlot.segment_id,
        QueueItem.is_repeat.is_(False),
    )
    return (ClipSlot.project_id == project.id, ClipSlot.is_open.is_(True), ~seen)


def pick_fresh(session: Session, project: Project, rater: Rater) -> int | None:
    """The highest-priority open clip this rater has not seen (oldest first), or None.

    A scan of ``ix_clip_slots_open`` from the top that stops at the first clip the rater has no
    item for. On PostgreSQL the slot row is locked (others skip it) until the unit commits.
    """
    query = (
        select(ClipSlot.segment_id)
        .where(*_unseen_open(project, rater))
        .order_by(ClipSlot.priority.desc(), ClipSlot.segment_id)
        .limit(1)
    )
    if _postgres(session):
        picked = session.scalar(query.with_for_update(skip_locked=True, of=ClipSlot))
        if picked is not None:
            return picked
        # every candidate was being taken by someone else: wait for them rather than say none
        query = query.with_for_update(of=ClipSlot)
    return session.scalar(query)


def _open_clips(project: Project):
    return (
        select(func.coalesce(func.sum(QueueCounter.open_clips), 0))
        .where(QueueCounter.project_id == project.id)
        .scalar_subquery()
    )


def open_clips(session: Session, project: Project) -> int:
    """How many of the project's clips still need a rater (the counters' sum)."""
    return int(session.scalar(select(_open_clips(project))))


def open_for(session: Session, project: Project, rater: Rater) -> int:
    """How many open clips this rater has not seen: the fresh clips still queued for them.

    The project's open count less the open clips among the rater's own first-time items: one
    statement, whose cost grows with the rater's items, not with the project's clips.
    """
    seen_open = (
        select(func.count(QueueItem.id))
        .join(ClipSlot, ClipSlot.segment_id == QueueItem.segment_id)
        .where(
            QueueItem.rater_id == rater.id,
            QueueItem.is_repeat.is_(False),
            ClipSlot.is_open.is_(True),
        )
        .scalar_subquery()
    )
    return int(session.scalar(select(_open_clips(project) - seen_open)))
