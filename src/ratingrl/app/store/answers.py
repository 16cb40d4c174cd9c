"""Answers to the rating queue: a rating or a skip (:func:`submit`), hidden repeats, and undo.

Ratings are append-only rows: an answer, a skip and an undo each add one, and an answer moves
its queue item from ``shown`` with a conditional UPDATE, so exactly one of several racing
submissions wins. Places of clips change in the same unit (:mod:`ratingrl.app.store.slots`).
:func:`submit` runs on every rating the server takes, so it executes statements built once on
the unit's connection and loads no ORM object; :func:`undo_last` (rarer) works on rows.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
from sqlalchemy import Float, bindparam, func, insert, select, update
from sqlalchemy.engine import Connection, Row
from sqlalchemy.orm import Session

from ratingrl.app.errors import AppError, Conflict, NotFound
from ratingrl.app.models import ItemStatus, QueueItem, RatingRow, RatingStatus
from ratingrl.app.store.context import RaterContext, RaterLike, context_of
from ratingrl.app.store.projects import new_public_id
from ratingrl.app.store.queue import REPEAT_GAP, done_count
from ratingrl.app.store.slots import SHOWN_LEASE_S, Places, lock_rater
from ratingrl.feedback.segments import FeedbackError, RatingScale

__all__ = ["SubmitResult", "submit", "undo_last"]

_ITEM_STATUS = {RatingStatus.RATED: ItemStatus.RATED, RatingStatus.SKIPPED: ItemStatus.SKIPPED}
"""The status an answer row gives its queue item (an undo row puts the item back to shown)."""

_ITEM = select(
    QueueItem.id,
    QueueItem.rater_id,
    QueueItem.segment_id,
    QueueItem.is_repeat,
    QueueItem.status,
    QueueItem.shown_at,
    QueueItem.lease_until,
).where(QueueItem.public_id == bindparam("public_id"))
_ITEM_PG = _ITEM.with_for_update()  # its lease cannot be given back under us (release_expired)
_ANSWER = (  # an answer ends the item's lease (a repeat has none)
    update(QueueItem)
    .where(QueueItem.id == bindparam("item"), QueueItem.status == ItemStatus.SHOWN)
    .values(status=bindparam("status"), lease_until=None)
)
_ADD_ROW = insert(RatingRow).returning(RatingRow.id)
_LATEST = (
    select(RatingRow.id, RatingRow.status, RatingRow.value)
    .where(RatingRow.item_id == bindparam("item"))
    .order_by(RatingRow.id.desc())
    .limit(1)
)
_STATUS = select(QueueItem.status).where(QueueItem.id == bindparam("item"))
_FIRST_TIME_RATED = (
    QueueItem.rater_id == bindparam("rater"),
    QueueItem.is_repeat.is_(False),
    QueueItem.status == ItemStatus.RATED,
)
_N_RATED = select(func.count(QueueItem.id)).where(*_FIRST_TIME_RATED)
_RATED = select(QueueItem.segment_id).where(*_FIRST_TIME_RATED).order_by(QueueItem.id)
_REPEATED = select(QueueItem.segment_id).where(
    QueueItem.rater_id == bindparam("rater"), QueueItem.is_repeat.is_(True)
)
_REOPEN = (  # an undo shows the item anew (and a first-time one takes a place for a new lease)
    update(QueueItem)
    .where(QueueItem.id == bindparam("item"), QueueItem.status == bindparam("was"))
    .values(
        status=ItemStatus.SHOWN,
        shown_at=bindparam("now", type_=Float),
        lease_until=bindparam("until", type_=Float),
    )
)


@dataclass(frozen=True)
class SubmitResult:
    """``created`` is False when the same answer had already been stored (a retried request)."""

    rating_id: int
    created: bool


def _check_answer(scale: RatingScale, value: int | None, skip: bool) -> None:
    if skip and value is not None:
        raise AppError("send either a rating or skip=true, not both")
    if skip or (type(value) is int and 0 <= value < scale.n):
        return
    if value is None:
        raise AppError("rating is required (or skip=true)")
    try:  # the scale's own check words the refusal
        scale.validate(np.array([value]), "rating")
    except FeedbackError as err:
        raise AppError(str(err)) from None


def _item_for(conn: Connection, rater: RaterContext, clip_id: str) -> Row:
    item = None
    if isinstance(clip_id, str) and len(clip_id) == 32:
        query = _ITEM_PG if conn.dialect.name == "postgresql" else _ITEM
        item = conn.execute(query, {"public_id": clip_id}).first()
    if item is None or item.rater_id != rater.id:  # other raters' items do not exist for you
        raise NotFound(f"unknown clip_id {clip_id!r}")
    return item


def _answered_already(
    conn: Connection, item: Row, clip_id: str, status: RatingStatus, value: int | None
) -> SubmitResult:
    """The outcome of an answer to an item that is no longer ``shown`` (a retry or a change)."""
    now_status = conn.execute(_STATUS, {"item": item.id}).scalar_one()
    latest = conn.execute(_LATEST, {"item": item.id}).first()
    if now_status == ItemStatus.PENDING:
        raise NotFound(f"unknown clip_id {clip_id!r}")
    if latest is not None and latest.status == status and latest.value == value:
        return SubmitResult(latest.id, False)
    raise Conflict(
        f"clip {clip_id} was already answered ({now_status}"
        f"{'' if latest is None or latest.value is None else f' {latest.value}'}); "
        "undo to change it"
    )


def submit(
    session: Session, rater: RaterLike, clip_id: str, value: int | None, skip: bool = False
) -> SubmitResult:
    """Store one rating (or a skip) for a clip shown to ``rater``; durable when the unit commits.

    Deterministic under retries and races: the item moves from ``shown`` to ``rated``/``skipped``
    with a conditional UPDATE, so exactly one submission wins. A later submission with the same
    answer returns the stored row (``created=False``); a different answer raises
    :class:`Conflict` (undo first to change a rating). A refused answer writes nothing.
    """
    ctx = context_of(session, rater)
    _check_answer(ctx.scale, value, skip)
    conn = session.connection()
    lock_rater(conn, ctx)
    item = _item_for(conn, ctx, clip_id)
    status = RatingStatus.SKIPPED if skip else RatingStatus.RATED
    now = time.time()
    if not conn.execute(_ANSWER, {"item": item.id, "status": _ITEM_STATUS[status]}).rowcount:
        return _answered_already(conn, item, clip_id, status, value)
    places = Places.of(ctx)
    if not item.is_repeat:  # a first-time item: its place is kept (rated) or given back
        rated = int(status == RatingStatus.RATED)
        leased = -int(item.lease_until is not None)  # read under the row's lock (PostgreSQL)
        if rated or leased:
            places.change(conn, item.segment_id, ctx.ratings_per_clip, rated, leased)
    row = {
        "project_id": ctx.project_id,
        "item_id": item.id,
        "rater_id": ctx.id,
        "segment_id": item.segment_id,
        "value": None if skip else int(value),
        "scale_n": ctx.scale.n,
        "status": status,
        "is_repeat": item.is_repeat,
        "shown_at": item.shown_at,
        "answered_at": now,
        "undoes_id": None,
    }
    rating_id = conn.execute(_ADD_ROW, row).scalar_one()
    if status == RatingStatus.RATED and not item.is_repeat:
        _maybe_schedule_repeat(conn, ctx)
    places.settle(conn)
    return SubmitResult(rating_id, True)


def _maybe_schedule_repeat(conn: Connection, rater: RaterContext) -> None:
    """Every ``repeat_every`` new ratings, queue one clip this rater rated before, hidden.

    The clip is drawn among those rated before the last :data:`REPEAT_GAP` (when there are
    any), so even a repeat shown early, because fresh clips ran out, is not the clip just seen.
    """
    if rater.repeat_every <= 0:
        return
    # includes the item being rated now (the UPDATE above already ran)
    n = conn.execute(_N_RATED, {"rater": rater.id}).scalar_one()
    if n % rater.repeat_every:
        return
    rated = conn.execute(_RATED, {"rater": rater.id}).scalars().all()
    repeated = set(conn.execute(_REPEATED, {"rater": rater.id}).scalars().all())
    older = [s for s in rated[:-REPEAT_GAP] if s not in repeated]
    candidates = older or [s for s in rated if s not in repeated]
    if not candidates:
        return
    rng = np.random.default_rng([rater.id, n])
    segment_id = candidates[int(rng.integers(len(candidates)))]
    conn.execute(
        insert(QueueItem).values(
            public_id=new_public_id(),
            rater_id=rater.id,
            segment_id=segment_id,
            is_repeat=True,
            status=ItemStatus.PENDING,
            due_after=done_count(conn, rater.id) + REPEAT_GAP,
            created_at=time.time(),
        )
    )


def _undo_target(session: Session, rater: RaterContext) -> RatingRow | None:
    """The rater's latest answer that is still in force (not itself withdrawn)."""
    rows = session.scalars(
        select(RatingRow)
        .where(RatingRow.rater_id == rater.id)
        .order_by(RatingRow.id.desc())
        .limit(200)
    ).all()
    undone = {r.undoes_id for r in rows if r.status == RatingStatus.UNDONE}
    return next((r for r in rows if r.status != RatingStatus.UNDONE and r.id not in undone), None)


def undo_last(session: Session, rater: RaterLike) -> QueueItem | None:
    """Withdraw the rater's latest answer (append an ``undone`` row) and show that clip again.

    The clip is shown anew: a first-time item takes a place for a new lease (and gives back
    the one its rating kept), even if others filled the clip meanwhile.
    """
    ctx = context_of(session, rater)
    conn = session.connection()
    lock_rater(conn, ctx)
    target = _undo_target(session, ctx)
    if target is None:
        return None
    latest = conn.execute(_LATEST, {"item": target.item_id}).first()
    if latest is None or latest.id != target.id:
        return None
    item = session.get(QueueItem, target.item_id, populate_existing=True)
    now = time.time()
    params = {
        "item": item.id,
        "was": _ITEM_STATUS[target.status],
        "now": now,
        "until": None if item.is_repeat else now + SHOWN_LEASE_S,
    }
    if not conn.execute(_REOPEN, params).rowcount:  # a concurrent undo got there first
        return None
    places = Places.of(ctx)
    if not item.is_repeat:
        rated = -int(target.status == RatingStatus.RATED)
        places.change(conn, item.segment_id, ctx.ratings_per_clip, rated, leased=1)
    undo = {
        "project_id": target.project_id,
        "item_id": item.id,
        "rater_id": ctx.id,
        "segment_id": item.segment_id,
        "value": None,
        "scale_n": target.scale_n,
        "status": RatingStatus.UNDONE,
        "is_repeat": item.is_repeat,
        "shown_at": target.shown_at,
        "answered_at": now,
        "undoes_id": target.id,
    }
    conn.execute(_ADD_ROW, undo)
    places.settle(conn)
    session.refresh(item)
    return item
