"""The rating queue: which clip a rater sees next, answers (rate, skip), undo and progress.

These are the rules the server, the CLI and the training source share: who sees which clip,
what a duplicate submission does, when a hidden repeat comes. Functions only add and flush;
the caller's :func:`ratingrl.app.db.unit_of_work` commits, so a request's changes are durable
together (the server answers only after that commit) or not at all.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
from sqlalchemy import and_, exists, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from ratingrl.app.db import (
    ItemStatus,
    Project,
    QueueItem,
    Rater,
    RatingRow,
    RatingStatus,
    SegmentRow,
)
from ratingrl.app.errors import AppError, Conflict, NotFound
from ratingrl.app.store.projects import new_public_id, project_scale
from ratingrl.feedback.segments import FeedbackError

__all__ = [
    "SHOWN_LEASE_S",
    "REPEAT_GAP",
    "SubmitResult",
    "next_item",
    "submit",
    "undo_last",
    "progress",
    "count_unanswered",
]

SHOWN_LEASE_S = 600.0
"""A clip shown to a rater counts towards ``ratings_per_clip`` for this long without an answer."""
REPEAT_GAP = 3
"""A hidden repeat is shown at the earliest this many ratings after it was scheduled."""

_ANSWERED = (ItemStatus.RATED, ItemStatus.SKIPPED)
_ITEM_STATUS = {RatingStatus.RATED: ItemStatus.RATED, RatingStatus.SKIPPED: ItemStatus.SKIPPED}
"""The status an answer row gives its queue item (an undo row puts the item back to shown)."""


def _done_count(session: Session, rater: Rater) -> int:
    return session.scalar(
        select(func.count(QueueItem.id)).where(
            QueueItem.rater_id == rater.id, QueueItem.status.in_(_ANSWERED)
        )
    )


def _eligible_segments(project: Project, rater: Rater, now: float):
    """Select of the segments this rater may be shown next (not yet seen, still needed)."""
    mine = exists().where(
        QueueItem.segment_id == SegmentRow.id,
        QueueItem.rater_id == rater.id,
        QueueItem.is_repeat.is_(False),
    )
    taken = (
        select(func.count(QueueItem.id))
        .where(
            QueueItem.segment_id == SegmentRow.id,
            QueueItem.is_repeat.is_(False),
            or_(
                QueueItem.status == ItemStatus.RATED,
                and_(
                    QueueItem.status == ItemStatus.SHOWN,
                    QueueItem.shown_at > now - SHOWN_LEASE_S,
                ),
            ),
        )
        .scalar_subquery()
    )
    return (
        SegmentRow.project_id == project.id,
        SegmentRow.reference_level.is_(None),
        ~mine,
        taken < project.ratings_per_clip,
    )


def _first_item(
    session: Session, rater: Rater, *conditions: ColumnElement[bool]
) -> QueueItem | None:
    return session.scalar(
        select(QueueItem)
        .where(QueueItem.rater_id == rater.id, *conditions)
        .order_by(QueueItem.id)
        .limit(1)
    )


def next_item(session: Session, rater: Rater) -> QueueItem | None:
    """The clip this rater should rate now, creating its queue item; None when nothing is left.

    Order: a clip already shown and not answered (a reload shows the same clip), then a hidden
    repeat that is due, then the highest-priority clip that still needs ratings. Showing a clip
    is a write (the item, or a repeat's move to ``shown``, with the time that starts its lease):
    it is flushed here and durable when the caller's unit commits, before the clip is sent.
    Two requests of one rater racing for a new item meet on a unique constraint; the loser's
    insert is undone by a savepoint and it takes the winner's item, the rest of its unit intact.
    """
    for _attempt in range(3):
        now = time.time()
        item = _first_item(session, rater, QueueItem.status == ItemStatus.SHOWN)
        if item is not None:
            return item
        done = _done_count(session, rater)
        item = _first_item(
            session, rater, QueueItem.status == ItemStatus.PENDING, QueueItem.due_after <= done
        )
        if item is not None:
            item.status, item.shown_at = ItemStatus.SHOWN, now
            session.flush()
            return item
        project = session.get(Project, rater.project_id)
        segment_id = session.scalar(
            select(SegmentRow.id)
            .where(*_eligible_segments(project, rater, now))
            .order_by(SegmentRow.priority.desc(), SegmentRow.id)
            .limit(1)
        )
        if segment_id is None:
            return None
        item = QueueItem(
            public_id=new_public_id(),
            rater_id=rater.id,
            segment_id=segment_id,
            status=ItemStatus.SHOWN,
            shown_at=now,
        )
        try:
            with session.begin_nested():
                session.add(item)
            return item
        except IntegrityError:  # the same rater asked twice at once: take the other's item
            continue
    raise Conflict("could not pick a clip; try again")


def _item_for(session: Session, rater: Rater, clip_id: str) -> QueueItem:
    item = None
    if isinstance(clip_id, str) and len(clip_id) == 32:
        item = session.scalar(select(QueueItem).where(QueueItem.public_id == clip_id))
    if item is None or item.rater_id != rater.id:  # other raters' items do not exist for you
        raise NotFound(f"unknown clip_id {clip_id!r}")
    return item


@dataclass(frozen=True)
class SubmitResult:
    """``created`` is False when the same answer had already been stored (a retried request)."""

    rating_id: int
    created: bool


def _latest_row(session: Session, item: QueueItem) -> RatingRow | None:
    return session.scalar(
        select(RatingRow).where(RatingRow.item_id == item.id).order_by(RatingRow.id.desc())
    )


def _check_answer(project: Project, value: int | None, skip: bool) -> None:
    if skip and value is not None:
        raise AppError("send either a rating or skip=true, not both")
    if not skip:
        if value is None:
            raise AppError("rating is required (or skip=true)")
        try:
            project_scale(project).validate(np.array([value]), "rating")
        except FeedbackError as err:
            raise AppError(str(err)) from None


def _answered_already(
    session: Session, item: QueueItem, clip_id: str, status: RatingStatus, value: int | None
) -> SubmitResult:
    """The outcome of an answer to an item that is no longer ``shown`` (a retry or a change)."""
    session.refresh(item)
    latest = _latest_row(session, item)
    if item.status == ItemStatus.PENDING:
        raise NotFound(f"unknown clip_id {clip_id!r}")
    if latest is not None and latest.status == status and latest.value == value:
        return SubmitResult(latest.id, False)
    raise Conflict(
        f"clip {clip_id} was already answered ({item.status}"
        f"{'' if latest is None or latest.value is None else f' {latest.value}'}); "
        "undo to change it"
    )


def submit(
    session: Session, rater: Rater, clip_id: str, value: int | None, skip: bool = False
) -> SubmitResult:
    """Store one rating (or a skip) for a clip shown to ``rater``; durable when the unit commits.

    Deterministic under retries and races: the item moves from ``shown`` to ``rated``/``skipped``
    with a conditional UPDATE, so exactly one submission wins. A later submission with the same
    answer returns the stored row (``created=False``); a different answer raises
    :class:`Conflict` (undo first to change a rating). A refused answer writes nothing.
    """
    project = session.get(Project, rater.project_id)
    _check_answer(project, value, skip)
    item = _item_for(session, rater, clip_id)
    status = RatingStatus.SKIPPED if skip else RatingStatus.RATED
    now = time.time()
    won = session.execute(
        update(QueueItem)
        .where(QueueItem.id == item.id, QueueItem.status == ItemStatus.SHOWN)
        .values(status=_ITEM_STATUS[status])
    ).rowcount
    if not won:
        return _answered_already(session, item, clip_id, status, value)
    row = RatingRow(
        project_id=project.id,
        item_id=item.id,
        rater_id=rater.id,
        segment_id=item.segment_id,
        value=None if skip else int(value),
        scale_n=project_scale(project).n,
        status=status,
        is_repeat=item.is_repeat,
        shown_at=item.shown_at,
        answered_at=now,
    )
    session.add(row)
    if status == RatingStatus.RATED and not item.is_repeat:
        _maybe_schedule_repeat(session, project, rater)
    session.flush()
    return SubmitResult(row.id, True)


def _maybe_schedule_repeat(session: Session, project: Project, rater: Rater) -> None:
    """Every ``repeat_every`` new ratings, queue one clip this rater rated before, hidden."""
    if project.repeat_every <= 0:
        return
    rated = session.scalars(
        select(QueueItem.segment_id)
        .where(
            QueueItem.rater_id == rater.id,
            QueueItem.is_repeat.is_(False),
            QueueItem.status == ItemStatus.RATED,
        )
        .order_by(QueueItem.id)
    ).all()
    n = len(rated)  # includes the item being rated now (the UPDATE above already ran)
    if n % project.repeat_every:
        return
    repeated = set(
        session.scalars(
            select(QueueItem.segment_id).where(
                QueueItem.rater_id == rater.id, QueueItem.is_repeat.is_(True)
            )
        ).all()
    )
    candidates = [s for s in rated if s not in repeated]
    if not candidates:
        return
    rng = np.random.default_rng([rater.id, n])
    segment_id = candidates[int(rng.integers(len(candidates)))]
    session.add(
        QueueItem(
            public_id=new_public_id(),
            rater_id=rater.id,
            segment_id=segment_id,
            is_repeat=True,
            status=ItemStatus.PENDING,
            due_after=_done_count(session, rater) + REPEAT_GAP,
        )
    )


def _undo_target(session: Session, rater: Rater) -> RatingRow | None:
    """The rater's latest answer that is still in force (not itself withdrawn)."""
    rows = session.scalars(
        select(RatingRow)
        .where(RatingRow.rater_id == rater.id)
        .order_by(RatingRow.id.desc())
        .limit(200)
    ).all()
    undone = {r.undoes_id for r in rows if r.status == RatingStatus.UNDONE}
    return next((r for r in rows if r.status != RatingStatus.UNDONE and r.id not in undone), None)


def undo_last(session: Session, rater: Rater) -> QueueItem | None:
    """Withdraw the rater's latest answer (append an ``undone`` row) and show that clip again."""
    target = _undo_target(session, rater)
    if target is None:
        return None
    item = session.get(QueueItem, target.item_id)
    latest = _latest_row(session, item)
    if latest is None or latest.id != target.id:
        return None
    now = time.time()
    won = session.execute(
        update(QueueItem)
        .where(QueueItem.id == item.id, QueueItem.status == _ITEM_STATUS[target.status])
        .values(status=ItemStatus.SHOWN, shown_at=now)
    ).rowcount
    if not won:  # a concurrent undo got there first; nothing was written here
        return None
    session.add(
        RatingRow(
            project_id=target.project_id,
            item_id=item.id,
            rater_id=rater.id,
            segment_id=item.segment_id,
            value=None,
            scale_n=target.scale_n,
            status=RatingStatus.UNDONE,
            is_repeat=item.is_repeat,
            shown_at=target.shown_at,
            answered_at=now,
            undoes_id=target.id,
        )
    )
    session.flush()
    session.refresh(item)
    return item


def progress(session: Session, rater: Rater) -> dict[str, int]:
    """``rated`` (answered by this rater) and ``queued`` (still to show them, as of now)."""
    project = session.get(Project, rater.project_id)
    done = _done_count(session, rater)
    waiting = session.scalar(
        select(func.count(QueueItem.id)).where(
            QueueItem.rater_id == rater.id,
            QueueItem.status.in_((ItemStatus.SHOWN, ItemStatus.PENDING)),
        )
    )
    fresh = session.scalar(
        select(func.count(SegmentRow.id)).where(*_eligible_segments(project, rater, time.time()))
    )
    return {"rated": int(done), "queued": int(waiting + fresh)}


def count_unanswered(session: Session, project: Project) -> int:
    """Clips shown to the project's raters and not answered yet (open leases)."""
    return int(
        session.scalar(
            select(func.count(QueueItem.id))
            .join(Rater, Rater.id == QueueItem.rater_id)
            .where(Rater.project_id == project.id, QueueItem.status == ItemStatus.SHOWN)
        )
    )
