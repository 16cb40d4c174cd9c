"""Reading ratings back: the current rating of each clip, withdrawals, history and segments.

Training, export and the operator page read through these inside their own unit of work. The
training source also records what it was handed (:func:`record_deliveries`): it asks for the
rows not yet delivered to it rather than for ids above a cursor, because ids need not commit in
order (on PostgreSQL a transaction holding id 7 can commit after one holding id 8 was read).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from sqlalchemy import exists, func, select
from sqlalchemy.orm import Session, aliased

from ratingrl.app.db import Delivery, Project, RatingRow, RatingStatus, SegmentRow, bytes_to_array
from ratingrl.feedback.segments import SegmentSet

__all__ = [
    "RATING_DELIVERY",
    "UNDO_DELIVERY",
    "effective_ratings",
    "undone_ratings",
    "record_deliveries",
    "rating_history",
    "segments_by_id",
    "segment_public_ids",
]

RATING_DELIVERY = "rating"
"""``Delivery.kind`` of a ratings row handed to a training source."""
UNDO_DELIVERY = "undo"
"""``Delivery.kind`` of an undo row whose withdrawal was reported to a training source."""


def _not_delivered(row_id, source_tag: str, kind: str):  # type: ignore[no-untyped-def]
    """Condition: ``row_id`` has no delivery of ``kind`` to ``source_tag`` (an indexed lookup)."""
    return ~exists().where(
        Delivery.source_tag == source_tag, Delivery.kind == kind, Delivery.row_id == row_id
    )


def effective_ratings(
    session: Session,
    project: Project,
    include_repeats: bool = False,
    source_tag: str | None = None,
    undelivered: bool = False,
) -> list[RatingRow]:
    """Each queue item's current rating (its latest row, when that is ``rated``), by row id.

    ``source_tag`` keeps the ratings of the clips that source queued; with ``undelivered`` only
    those not yet delivered to it (:func:`record_deliveries`), however late they committed.
    """
    if undelivered and source_tag is None:
        raise ValueError("undelivered=True needs the source_tag the ratings are delivered to")
    latest = (select(func.max(RatingRow.id)).where(RatingRow.project_id == project.id)).group_by(
        RatingRow.item_id
    )
    query = select(RatingRow).where(
        RatingRow.id.in_(latest), RatingRow.status == RatingStatus.RATED
    )
    if not include_repeats:
        query = query.where(RatingRow.is_repeat.is_(False))
    if source_tag is not None:
        tagged = select(SegmentRow.id).where(SegmentRow.source_tag == source_tag)
        query = query.where(RatingRow.segment_id.in_(tagged))
    if undelivered:
        query = query.where(_not_delivered(RatingRow.id, source_tag, RATING_DELIVERY))
    return list(session.scalars(query.order_by(RatingRow.id)).all())


def undone_ratings(
    session: Session,
    project: Project,
    unreported_to: str | None = None,
    include_repeats: bool = False,
) -> list[tuple[int, int]]:
    """``(undo row id, id of the rating it withdrew)`` for the project's undos, by undo id.

    Only withdrawn *ratings*, of non-repeat items unless ``include_repeats`` (for a source that
    hands repeats over as labels): skips were never labels.
    A withdrawn rating never becomes current again (changing it means a new row), so whoever
    holds one of these ratings should drop it. ``unreported_to`` leaves out the undos already
    reported to that source (recorded with :func:`record_deliveries`, kind ``"undo"``).
    """
    target = aliased(RatingRow)  # the withdrawn row, looked up by primary key: polled often
    query = (
        select(RatingRow.id, RatingRow.undoes_id)
        .join(target, target.id == RatingRow.undoes_id)
        .where(
            RatingRow.project_id == project.id,
            RatingRow.status == RatingStatus.UNDONE,
            target.status == RatingStatus.RATED,
        )
        .order_by(RatingRow.id)
    )
    if not include_repeats:
        query = query.where(target.is_repeat.is_(False))
    if unreported_to is not None:
        query = query.where(_not_delivered(RatingRow.id, unreported_to, UNDO_DELIVERY))
    return [(int(undo), int(rating)) for undo, rating in session.execute(query).all()]


def record_deliveries(session: Session, source_tag: str, kind: str, row_ids: Iterable[int]) -> None:
    """Record that the rows ``row_ids`` (of ``kind``) were handed to ``source_tag``.

    In the unit of work that read them: they are delivered exactly when it commits. Recording
    a row twice for one source is refused by the table's unique constraint (IntegrityError).
    """
    if not 1 <= len(kind) <= 16:
        raise ValueError(f"kind must be 1..16 characters (e.g. {RATING_DELIVERY!r}), got {kind!r}")
    session.add_all(Delivery(source_tag=source_tag, kind=kind, row_id=int(i)) for i in row_ids)
    session.flush()


def rating_history(session: Session, project: Project) -> list[RatingRow]:
    """Every row of the project's append-only table (ratings, skips, undos), by id."""
    return list(
        session.scalars(
            select(RatingRow).where(RatingRow.project_id == project.id).order_by(RatingRow.id)
        ).all()
    )


def segments_by_id(session: Session, ids: list[int]) -> SegmentSet:
    """The stored segments ``ids`` (in that order) as a SegmentSet, with states if all have them."""
    rows = {r.id: r for r in session.scalars(select(SegmentRow).where(SegmentRow.id.in_(ids)))}
    ordered = [rows[i] for i in ids]
    has_rewards = all(r.true_rewards is not None for r in ordered)
    states = None
    if ordered and all(r.states is not None for r in ordered):
        arrays = [bytes_to_array(r.states) for r in ordered]
        if len({a.shape for a in arrays}) == 1:  # one env per project: always, unless hand-made
            states = np.stack(arrays)
    return SegmentSet(
        np.stack([bytes_to_array(r.obs) for r in ordered]),
        np.stack([bytes_to_array(r.acts) for r in ordered]),
        np.stack([bytes_to_array(r.true_rewards) for r in ordered]) if has_rewards else None,
        np.array([r.episode_id for r in ordered]),
        np.array([r.start for r in ordered]),
        states=states,
    )


def segment_public_ids(session: Session, ids: list[int]) -> dict[int, str]:
    """``{segment id: public id}``: the clip ids an export names segments by."""
    query = select(SegmentRow.id, SegmentRow.public_id).where(SegmentRow.id.in_(set(ids)))
    return {int(i): public for i, public in session.execute(query).all()}
