"""The rating queue: which clip a rater sees next, answers (rate, skip), undo and progress.

These are the rules the server, the CLI and the training source share: who sees which clip,
what a duplicate submission does, when a hidden repeat comes. Functions only write through the
caller's unit of work (:func:`ratingrl.app.db.unit_of_work`), which commits, so a request's
changes are durable together (the server answers only after that commit) or not at all. How a
clip's places are counted, and how a fresh clip is picked without counting, is
:mod:`ratingrl.app.store.slots`; the answers (submit, repeats) are
:mod:`ratingrl.app.store.answers`.

Every hidden repeat that is scheduled is shown: it waits :data:`REPEAT_GAP` ratings after it
was scheduled, unless the rater's fresh clips run out first -- then it comes at once, so
``next`` says "nothing left" only when ``progress`` counts nothing queued.

The server's requests run these on every rating, so they are statements built once (executed
on the unit's connection, no ORM objects loaded) and a rater as a
:class:`~ratingrl.app.store.context.RaterContext` (one query, with the project's fields). The
functions that return an item (:func:`next_item`, :func:`undo_last`) load it as a
:class:`QueueItem` for their other callers; the server takes :func:`show_next`'s public id.
"""

from __future__ import annotations

import time
from typing import NamedTuple

from sqlalchemy import Float, bindparam, func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ratingrl.app.errors import Conflict
from ratingrl.app.models import ItemStatus, QueueItem, Rater
from ratingrl.app.store.context import RaterContext, RaterLike, context_of
from ratingrl.app.store.projects import new_public_id
from ratingrl.app.store.slots import (
    SHOWN_LEASE_S,
    Places,
    lock_rater,
    open_clips,
    pick_fresh,
    release_expired,
    seen_open,
)

__all__ = [
    "SHOWN_LEASE_S",
    "REPEAT_GAP",
    "Shown",
    "show_next",
    "next_item",
    "queue_counts",
    "progress",
    "count_unanswered",
    "done_count",
]

REPEAT_GAP = 3
"""A hidden repeat comes this many ratings after it was scheduled (or when fresh clips run out)."""

_ANSWERED = (ItemStatus.RATED, ItemStatus.SKIPPED)
_WAITING_STATUSES = (ItemStatus.SHOWN, ItemStatus.PENDING)


class Shown(NamedTuple):
    """The item a rater is shown: its row id and its public id (the API's ``clip_id``)."""

    id: int
    public_id: str


_WAITING = (
    select(QueueItem.id, QueueItem.public_id, QueueItem.status, QueueItem.due_after)
    .where(QueueItem.rater_id == bindparam("rater"), QueueItem.status.in_(_WAITING_STATUSES))
    .order_by(QueueItem.id)
)
"""The rater's items shown and not answered, and pending repeats, oldest first."""
_DONE = select(func.count(QueueItem.id)).where(
    QueueItem.rater_id == bindparam("rater"), QueueItem.status.in_(_ANSWERED)
)
_SHOW_PENDING = (
    update(QueueItem)
    .where(QueueItem.id == bindparam("item"))
    .values(status=ItemStatus.SHOWN, shown_at=bindparam("now", type_=Float))
)
_NEW_ITEM = {
    "rater_id": bindparam("rater"),
    "segment_id": bindparam("segment"),
    "public_id": bindparam("public_id"),
    "is_repeat": False,
    "status": ItemStatus.SHOWN,
    "due_after": 0,
    "shown_at": bindparam("now", type_=Float),
    "created_at": bindparam("now", type_=Float),
    "lease_until": bindparam("until", type_=Float),
}
_INSERT_ITEM = {  # a conflict (the rater's other request inserted it first) inserts nothing
    name: dialect.insert(QueueItem).values(_NEW_ITEM).on_conflict_do_nothing()
    .returning(QueueItem.id)
    for name, dialect in (("sqlite", sqlite), ("postgresql", postgresql))
}  # fmt: skip
_COUNTS = select(
    select(func.count(QueueItem.id))
    .where(QueueItem.rater_id == bindparam("rater"), QueueItem.status.in_(_ANSWERED))
    .scalar_subquery(),
    select(func.count(QueueItem.id))
    .where(QueueItem.rater_id == bindparam("rater"), QueueItem.status.in_(_WAITING_STATUSES))
    .scalar_subquery(),
    open_clips(bindparam("project")) - seen_open(bindparam("rater")),
)
"""``progress`` in one statement: answered, waiting, and open clips the rater has not seen."""


def done_count(conn: Connection, rater_id: int) -> int:
    """How many of the rater's items are answered (rated or skipped)."""
    return int(conn.execute(_DONE, {"rater": rater_id}).scalar_one())


def show_next(session: Session, rater: RaterLike) -> Shown | None:
    """The clip this rater should rate now, shown (an item created or moved); None when none is
    left. :func:`next_item` without loading the item: what the server sends.

    Leases that ran out are given back first (as :func:`progress` does). Order: a clip already
    shown and not answered (a reload shows the same clip), then a hidden repeat that is due,
    then the highest-priority clip that still needs ratings, then a hidden repeat that is not
    due yet (fresh clips ran out: shown now rather than never). Showing a clip is a write (the
    item, or a repeat's move to ``shown``, with the time that starts its lease), durable when
    the caller's unit commits, before the clip is sent. Two requests of one rater racing for a
    new item take turns on the rater's row (PostgreSQL) or on SQLite's write lock; should they
    still meet on the items' unique constraint, the loser inserts nothing and takes the
    winner's item, the rest of its unit intact.
    """
    ctx = context_of(session, rater)
    conn = session.connection()
    lock_rater(conn, ctx)
    places = Places.of(ctx)
    release_expired(conn, time.time(), places)
    for _attempt in range(3):
        now = time.time()
        waiting = conn.execute(_WAITING, {"rater": ctx.id}).all()
        on_screen = [w for w in waiting if w.status == ItemStatus.SHOWN]
        if on_screen:
            places.settle(conn)
            return Shown(on_screen[0].id, on_screen[0].public_id)
        pending = [w for w in waiting if w.status == ItemStatus.PENDING]
        done = done_count(conn, ctx.id) if pending else 0
        repeat = next((w for w in pending if w.due_after <= done), None)
        if repeat is None:
            try:
                fresh = _lease_fresh(conn, ctx, now, places)
            except _Raced:
                continue
            if fresh is not None:
                places.settle(conn)
                return fresh
            repeat = pending[0] if pending else None  # fresh clips ran out: the repeat comes now
        if repeat is not None:
            conn.execute(_SHOW_PENDING, {"item": repeat.id, "now": now})
        places.settle(conn)  # counters last: lock order rater, items, clips, counters
        return None if repeat is None else Shown(repeat.id, repeat.public_id)
    raise Conflict("could not pick a clip; try again")


def next_item(session: Session, rater: RaterLike) -> QueueItem | None:
    """:func:`show_next`, the item loaded as a :class:`QueueItem` (CLI, tests, benchmarks)."""
    shown = show_next(session, rater)
    if shown is None:
        return None
    return session.get(QueueItem, shown.id, populate_existing=True)


class _Raced(Exception):
    """Another request of the same rater inserted the item first."""


def _lease_fresh(conn: Connection, rater: RaterContext, now: float, places: Places) -> Shown | None:
    """A new item for the best fresh clip, holding one of its places for the lease; or None."""
    segment_id = pick_fresh(conn, rater)
    if segment_id is None:
        return None
    public_id = new_public_id()
    params = {
        "rater": rater.id,
        "segment": segment_id,
        "public_id": public_id,
        "now": now,
        "until": now + SHOWN_LEASE_S,
    }
    statement = _INSERT_ITEM.get(conn.dialect.name)
    if statement is not None:
        item_id = conn.execute(statement, params).scalar()
    else:  # another database: the conflict is an error, undone by a savepoint
        try:
            with conn.begin_nested():
                result = conn.execute(insert(QueueItem).values(_NEW_ITEM), params)
            item_id = result.inserted_primary_key[0]
        except IntegrityError:
            item_id = None
    if item_id is None:  # the same rater asked twice at once: take the other's item
        raise _Raced
    places.change(conn, segment_id, rater.ratings_per_clip, leased=1)
    return Shown(item_id, public_id)


def queue_counts(conn: Connection, rater: RaterContext) -> dict[str, int]:
    """``rated`` and ``queued`` as :func:`progress` counts them, leases as they stand (one
    statement: for a request that gave back the expired ones already, e.g. :func:`show_next`)."""
    done, waiting, fresh = conn.execute(
        _COUNTS, {"rater": rater.id, "project": rater.project_id}
    ).one()
    return {"rated": int(done), "queued": int(waiting) + int(fresh)}


def progress(session: Session, rater: RaterLike) -> dict[str, int]:
    """``rated`` (answered by this rater) and ``queued`` (still to show them, as of now).

    ``queued`` counts the rater's shown and pending items and the open clips they have not
    seen: what :func:`next_item` would go on to give, so it is 0 exactly when ``next_item``
    returns None. Leases that ran out are given back first (a write, like ``next_item``).
    """
    ctx = context_of(session, rater)
    conn = session.connection()
    places = Places.of(ctx)
    release_expired(conn, time.time(), places)
    places.settle(conn)
    return queue_counts(conn, ctx)


def count_unanswered(session: Session, project) -> int:  # type: ignore[no-untyped-def]
    """Clips shown to the project's raters and not answered yet (open leases)."""
    return int(
        session.scalar(
            select(func.count(QueueItem.id))
            .join(Rater, Rater.id == QueueItem.rater_id)
            .where(Rater.project_id == project.id, QueueItem.status == ItemStatus.SHOWN)
        )
    )
