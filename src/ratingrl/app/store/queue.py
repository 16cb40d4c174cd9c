"""The rating queue: which clip a rater sees next, answers (rate, skip), undo and progress.

These are the rules the server, the CLI and the training source share: who sees which clip,
what a duplicate submission does, when a hidden repeat comes. Functions only add and flush;
the caller's :func:`ratingrl.app.db.unit_of_work` commits, so a request's changes are durable
together (the server answers only after that commit) or not at all. How a clip's places are
counted, and how a fresh clip is picked without counting, is :mod:`ratingrl.app.store.slots`.

Every hidden repeat that is scheduled is shown: it waits :data:`REPEAT_GAP` ratings after it
was scheduled, unless the rater's fresh clips run out first -- then it comes at once, so
``next`` says "nothing left" only when ``progress`` counts nothing queued.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ratingrl.app.db import (
    ItemStatus,
    Project,
    QueueItem,
    Rater,
    RatingRow,
    RatingStatus,
)
from ratingrl.app.errors import AppError, Conflict, NotFound
from ratingrl.app.store.projects import new_public_id, project_scale
from ratingrl.app.store.slots import (
    SHOWN_LEASE_S,
    Places,
    lock_rater,
    open_for,
    pick_fresh,
    release_expired,
    release_lease,
)
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

REPEAT_GAP = 3
"""A hidden repeat comes this many ratings after it was scheduled (or when fresh clips run out)."""

_ANSWERED = (ItemStatus.RATED, ItemStatus.SKIPPED)
_ITEM_STATUS = {RatingStatus.RATED: ItemStatus.RATED, RatingStatus.SKIPPED: ItemStatus.SKIPPED}
"""The status an answer row gives its queue item (an undo row puts the item back to shown)."""


def _done_count(session: Session, rater: Rater) -> int:
    return session.scalar(
        select(func.count(QueueItem.id)).where(
            QueueItem.rater_id == rater.id, QueueItem.status.in_(_ANSWERED)
        )
    )


def _waiting(session: Session, rater: Rater) -> list[QueueItem]:
    """The rater's items shown and not answered, and pending repeats, oldest first."""
    return list(
        session.scalars(
            select(QueueItem)
            .where(
                QueueItem.rater_id == rater.id,
                QueueItem.status.in_((ItemStatus.SHOWN, ItemStatus.PENDING)),
            )
            .order_by(QueueItem.id)
        ).all()
    )


def next_item(session: Session, rater: Rater) -> QueueItem | None:
    """The clip this rater should rate now, creating its queue item; None when nothing is left.

    Order: a clip already shown and not answered (a reload shows the same clip), then a hidden
    repeat that is due, then the highest-priority clip that still needs ratings, then a hidden
    repeat that is not due yet (fresh clips ran out: shown now rather than never). Showing a
    clip is a write (the item, or a repeat's move to ``shown``, with the time that starts its
    lease): it is flushed here and durable when the caller's unit commits, before the clip is
    sent. Two requests of one rater racing for a new item take turns on the rater's row
    (PostgreSQL) or on SQLite's write lock; should they still meet on the items' unique
    constraint, the loser's insert is undone by a savepoint and it takes the winner's item,
    the rest of its unit intact.
    """
    lock_rater(session, rater)
    project = session.get(Project, rater.project_id)
    places = Places.of(rater)
    for _attempt in range(3):
        now = time.time()
        waiting = _waiting(session, rater)
        shown = [i for i in waiting if i.status == ItemStatus.SHOWN]
        pending = [i for i in waiting if i.status == ItemStatus.PENDING]
        if shown:
            item = shown[0]
            break
        done = _done_count(session, rater) if pending else 0
        item = next((i for i in pending if i.due_after <= done), None)
        if item is None:
            release_expired(session, now, places)
            try:
                item = _lease_fresh(session, project, rater, now, places)
            except _Raced:
                continue
        if item is None and pending:  # fresh clips ran out: the repeat comes now, not never
            item = pending[0]
        if item is not None and item.status == ItemStatus.PENDING:
            item.status, item.shown_at = ItemStatus.SHOWN, now
            session.flush()
        break
    else:
        raise Conflict("could not pick a clip; try again")
    places.settle(session)
    return item


class _Raced(Exception):
    """Another request of the same rater inserted the item first."""


def _lease_fresh(
    session: Session, project: Project, rater: Rater, now: float, places: Places
) -> QueueItem | None:
    """A new item for the best fresh clip, holding one of its places for the lease; or None."""
    segment_id = pick_fresh(session, project, rater)
    if segment_id is None:
        return None
    item = QueueItem(
        public_id=new_public_id(),
        rater_id=rater.id,
        segment_id=segment_id,
        status=ItemStatus.SHOWN,
        shown_at=now,
        lease_until=now + SHOWN_LEASE_S,
    )
    try:
        with session.begin_nested():
            session.add(item)
            session.flush()
            places.change(session, segment_id, project.ratings_per_clip, leased=1)
    except IntegrityError:  # the same rater asked twice at once: take the other's item
        raise _Raced from None
    return item


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
    lock_rater(session, rater)
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
    places = Places.of(rater)
    if not item.is_repeat:  # a first-time item: its place is kept (rated) or given back
        rated = int(status == RatingStatus.RATED)
        leased = -int(release_lease(session, item.id))
        if rated or leased:
            places.change(session, item.segment_id, project.ratings_per_clip, rated, leased)
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
    places.settle(session)
    return SubmitResult(row.id, True)


def _maybe_schedule_repeat(session: Session, project: Project, rater: Rater) -> None:
    """Every ``repeat_every`` new ratings, queue one clip this rater rated before, hidden.

    The clip is drawn among those rated before the last :data:`REPEAT_GAP` (when there are
    any), so even a repeat shown early, because fresh clips ran out, is not the clip just seen.
    """
    if project.repeat_every <= 0:
        return
    first_time_rated = (
        QueueItem.rater_id == rater.id,
        QueueItem.is_repeat.is_(False),
        QueueItem.status == ItemStatus.RATED,
    )
    # includes the item being rated now (the UPDATE above already ran)
    n = session.scalar(select(func.count(QueueItem.id)).where(*first_time_rated))
    if n % project.repeat_every:
        return
    rated = session.scalars(
        select(QueueItem.segment_id).where(*first_time_rated).order_by(QueueItem.id)
    ).all()
    repeated = set(
        session.scalars(
            select(QueueItem.segment_id).where(
                QueueItem.rater_id == rater.id, QueueItem.is_repeat.is_(True)
            )
        ).all()
    )
    older = [s for s in rated[:-REPEAT_GAP] if s not in repeated]
    candidates = older or [s for s in rated if s not in repeated]
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
    """Withdraw the rater's latest answer (append an ``undone`` row) and show that clip again.

    The clip is shown anew: a first-time item takes a place for a new lease (and gives back
    the one its rating kept), even if others filled the clip meanwhile.
    """
    lock_rater(session, rater)
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
        .values(
            status=ItemStatus.SHOWN,
            shown_at=now,
            lease_until=None if item.is_repeat else now + SHOWN_LEASE_S,
        )
    ).rowcount
    if not won:  # a concurrent undo got there first; nothing was written here
        return None
    places = Places.of(rater)
    if not item.is_repeat:
        rated = -int(target.status == RatingStatus.RATED)
        project = session.get(Project, rater.project_id)
        places.change(session, item.segment_id, project.ratings_per_clip, rated, leased=1)
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
    places.settle(session)
    session.refresh(item)
    return item


def progress(session: Session, rater: Rater) -> dict[str, int]:
    """``rated`` (answered by this rater) and ``queued`` (still to show them, as of now).

    ``queued`` counts the rater's shown and pending items and the open clips they have not
    seen: what :func:`next_item` would go on to give, so it is 0 exactly when ``next_item``
    returns None. Leases that ran out are given back first (a write, like ``next_item``).
    """
    project = session.get(Project, rater.project_id)
    places = Places.of(rater)
    release_expired(session, time.time(), places)
    places.settle(session)
    counts = dict(
        session.execute(
            select(QueueItem.status, func.count(QueueItem.id))
            .where(QueueItem.rater_id == rater.id)
            .group_by(QueueItem.status)
        ).all()
    )
    done = sum(counts.get(status, 0) for status in _ANSWERED)
    waiting = counts.get(ItemStatus.SHOWN, 0) + counts.get(ItemStatus.PENDING, 0)
    return {"rated": int(done), "queued": int(waiting + open_for(session, project, rater))}


def count_unanswered(session: Session, project: Project) -> int:
    """Clips shown to the project's raters and not answered yet (open leases)."""
    return int(
        session.scalar(
            select(func.count(QueueItem.id))
            .join(Rater, Rater.id == QueueItem.rater_id)
            .where(Rater.project_id == project.id, QueueItem.status == ItemStatus.SHOWN)
        )
    )
