"""Reading ratings back: the current rating of each clip, withdrawals, history and segments.

Read-only: training, export and the operator page call these inside their own unit of work.
"""

from __future__ import annotations

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.orm import Session, aliased

from ratingrl.app.db import Project, RatingRow, RatingStatus, SegmentRow, bytes_to_array
from ratingrl.feedback.segments import SegmentSet

__all__ = [
    "effective_ratings",
    "undone_ratings",
    "rating_history",
    "segments_by_id",
    "segment_public_ids",
]


def effective_ratings(
    session: Session,
    project: Project,
    after_id: int = 0,
    include_repeats: bool = False,
    source_tag: str | None = None,
) -> list[RatingRow]:
    """Each queue item's current rating (its latest row, when that is ``rated``), by row id."""
    latest = (select(func.max(RatingRow.id)).where(RatingRow.project_id == project.id)).group_by(
        RatingRow.item_id
    )
    query = select(RatingRow).where(
        RatingRow.id.in_(latest),
        RatingRow.status == RatingStatus.RATED,
        RatingRow.id > after_id,
    )
    if not include_repeats:
        query = query.where(RatingRow.is_repeat.is_(False))
    if source_tag is not None:
        tagged = select(SegmentRow.id).where(SegmentRow.source_tag == source_tag)
        query = query.where(RatingRow.segment_id.in_(tagged))
    return list(session.scalars(query.order_by(RatingRow.id)).all())


def undone_ratings(session: Session, project: Project, after_id: int = 0) -> list[tuple[int, int]]:
    """``(undo row id, id of the rating it withdrew)`` for undos after row ``after_id``, by id.

    Only withdrawn *ratings* of non-repeat items: skips and hidden repeats were never labels.
    A withdrawn rating never becomes current again (changing it means a new row), so whoever
    holds one of these ratings should drop it.
    """
    target = aliased(RatingRow)  # the withdrawn row, looked up by primary key: polled often
    query = (
        select(RatingRow.id, RatingRow.undoes_id)
        .join(target, target.id == RatingRow.undoes_id)
        .where(
            RatingRow.id > after_id,
            RatingRow.project_id == project.id,
            RatingRow.status == RatingStatus.UNDONE,
            target.status == RatingStatus.RATED,
            target.is_repeat.is_(False),
        )
        .order_by(RatingRow.id)
    )
    return [(int(undo), int(rating)) for undo, rating in session.execute(query).all()]


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
