"""Reading pair answers back: each pair item's current answer, withdrawals, and the dataset.

Training and export call these in their own unit of work; all of it reads, except
:func:`record_pair_deliveries`, with which the training source records what it was handed (the
``deliveries`` table, as for ratings: not an id cursor, since on PostgreSQL ids need not commit
in order). The dataset is the library's :class:`~ratingrl.feedback.segments.PreferencePairs`
with the clips as the rater saw them: ``first`` is the left clip, ``second`` the right one, and
the label is the probability that the right one is preferred (left 0, right 1, equally good 0.5).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
from sqlalchemy import exists, func, select
from sqlalchemy.orm import Session, aliased

from ratingrl.app.db import (
    Delivery,
    PairAnswerRow,
    PairChoice,
    PairItem,
    PairRow,
    PairSegmentRow,
    Project,
    RatingStatus,
    bytes_to_array,
)
from ratingrl.feedback.segments import PreferencePairs, SegmentSet

__all__ = [
    "PAIR_DELIVERY",
    "PAIR_UNDO_DELIVERY",
    "CHOICE_LABELS",
    "AnsweredPair",
    "latest_pair_answer",
    "current_pair_answers",
    "withdrawn_pair_answers",
    "record_pair_deliveries",
    "answered_pairs",
    "preference_pairs",
]

PAIR_DELIVERY = "pair"
"""``Delivery.kind`` of a pair answer handed to a training source."""
PAIR_UNDO_DELIVERY = "pair-undo"
"""``Delivery.kind`` of a pair undo whose withdrawal was reported to a training source."""

CHOICE_LABELS = {PairChoice.LEFT: 0.0, PairChoice.RIGHT: 1.0, PairChoice.EQUAL: 0.5}
"""A choice as ``PreferencePairs`` labels it: P(second, i.e. the right clip, is preferred)."""


def latest_pair_answer(session: Session, item: PairItem) -> PairAnswerRow | None:
    """The newest row (answer, skip or undo) of one pair item."""
    return session.scalar(
        select(PairAnswerRow)
        .where(PairAnswerRow.item_id == item.id)
        .order_by(PairAnswerRow.id.desc())
        .limit(1)
    )


def _tagged(query, source_tag: str | None):  # type: ignore[no-untyped-def]
    if source_tag is None:
        return query
    return query.where(
        PairAnswerRow.pair_id.in_(select(PairRow.id).where(PairRow.source_tag == source_tag))
    )


def _delivered(row_id, source_tag: str, kind: str):  # type: ignore[no-untyped-def]
    """Condition: ``row_id`` was handed (as ``kind``) to ``source_tag``: an indexed lookup."""
    return exists().where(
        Delivery.source_tag == source_tag, Delivery.kind == kind, Delivery.row_id == row_id
    )


def record_pair_deliveries(
    session: Session, source_tag: str, kind: str, row_ids: Iterable[int]
) -> None:
    """Record that rows ``row_ids`` (``kind``: :data:`PAIR_DELIVERY` or
    :data:`PAIR_UNDO_DELIVERY`) were handed to ``source_tag``, in the unit that read them: they
    count as delivered exactly when it commits."""
    if kind not in (PAIR_DELIVERY, PAIR_UNDO_DELIVERY):
        raise ValueError(f"kind must be {PAIR_DELIVERY!r} or {PAIR_UNDO_DELIVERY!r}, got {kind!r}")
    session.add_all(Delivery(source_tag=source_tag, kind=kind, row_id=int(i)) for i in row_ids)
    session.flush()


def current_pair_answers(
    session: Session,
    project: Project,
    source_tag: str | None = None,
    undelivered: bool = False,
) -> list[PairAnswerRow]:
    """Each pair item's current answer (its latest row, when that is an answer), by row id.

    ``source_tag`` keeps the answers to pairs one source queued; with ``undelivered`` only
    those not yet handed to it, however late they committed. Skips and withdrawn answers are
    not answers; a pair answered by several raters gives one row per rater.
    """
    if undelivered and source_tag is None:
        raise ValueError("undelivered=True needs the source_tag the answers are delivered to")
    latest = _tagged(
        select(func.max(PairAnswerRow.id)).where(PairAnswerRow.project_id == project.id),
        source_tag,
    ).group_by(PairAnswerRow.item_id)
    query = select(PairAnswerRow).where(
        PairAnswerRow.id.in_(latest), PairAnswerRow.status == RatingStatus.RATED
    )
    if undelivered:
        query = query.where(~_delivered(PairAnswerRow.id, source_tag, PAIR_DELIVERY))
    return list(session.scalars(query.order_by(PairAnswerRow.id)).all())


def withdrawn_pair_answers(
    session: Session,
    project: Project,
    source_tag: str | None = None,
    unreported_to: str | None = None,
) -> list[tuple[int, int]]:
    """``(undo row id, id of the answer it withdrew)`` for every withdrawn answer, by id.

    Skips that were undone are left out: they were never labels. A withdrawn answer never
    becomes current again (answering anew is a new row with a new id). ``unreported_to`` keeps
    the withdrawals of answers handed to that source and not yet reported to it.
    """
    target = aliased(PairAnswerRow)
    query = _tagged(
        select(PairAnswerRow.id, PairAnswerRow.undoes_id)
        .join(target, target.id == PairAnswerRow.undoes_id)
        .where(
            PairAnswerRow.project_id == project.id,
            PairAnswerRow.status == RatingStatus.UNDONE,
            target.status == RatingStatus.RATED,
        ),
        source_tag,
    )
    if unreported_to is not None:
        query = query.where(
            _delivered(PairAnswerRow.undoes_id, unreported_to, PAIR_DELIVERY),
            ~_delivered(PairAnswerRow.id, unreported_to, PAIR_UNDO_DELIVERY),
        )
    rows = session.execute(query.order_by(PairAnswerRow.id)).all()
    return [(int(undo), int(answer)) for undo, answer in rows]


@dataclass(frozen=True)
class AnsweredPair:
    """One current answer with its item and the clips as shown (left, right)."""

    answer: PairAnswerRow
    item: PairItem
    left: PairSegmentRow
    right: PairSegmentRow

    @property
    def label(self) -> float:
        return CHOICE_LABELS[PairChoice(self.answer.choice)]


def _by_id(session: Session, model: type, ids: set[int]) -> dict:
    return {r.id: r for r in session.scalars(select(model).where(model.id.in_(ids)))}


def answered_pairs(session: Session, answers: Sequence[PairAnswerRow]) -> list[AnsweredPair]:
    """``answers`` with their items and clips, in the same order (three reads in all)."""
    items = _by_id(session, PairItem, {a.item_id for a in answers})
    pairs = _by_id(session, PairRow, {a.pair_id for a in answers})
    wanted = {s for p in pairs.values() for s in (p.first_id, p.second_id)}
    clips = _by_id(session, PairSegmentRow, wanted)
    out = []
    for answer in answers:
        item, pair = items[answer.item_id], pairs[answer.pair_id]
        first, second = clips[pair.first_id], clips[pair.second_id]
        left, right = (second, first) if item.swapped else (first, second)
        out.append(AnsweredPair(answer, item, left, right))
    return out


def _segment_set(rows: Sequence[PairSegmentRow]) -> SegmentSet:
    has_rewards = all(r.true_rewards is not None for r in rows)
    states = None
    if rows and all(r.states is not None for r in rows):
        arrays = [bytes_to_array(r.states) for r in rows]
        if len({a.shape for a in arrays}) == 1:
            states = np.stack(arrays)
    return SegmentSet(
        np.stack([bytes_to_array(r.obs) for r in rows]),
        np.stack([bytes_to_array(r.acts) for r in rows]),
        np.stack([bytes_to_array(r.true_rewards) for r in rows]) if has_rewards else None,
        np.array([r.episode_id for r in rows]),
        np.array([r.start for r in rows]),
        states=states,
    )


def preference_pairs(
    answered: Sequence[AnsweredPair], source: dict, raters: dict[int, str]
) -> PreferencePairs:
    """The answers as the library's preference dataset (left clip ``first``), each named by its
    answer id (``label_id``: an undo withdraws it from a run) and its rater's name."""
    return PreferencePairs(
        _segment_set([a.left for a in answered]),
        _segment_set([a.right for a in answered]),
        np.array([a.label for a in answered]),
        source,
        np.array([raters[a.answer.rater_id] for a in answered], dtype=object),
        np.array([str(a.answer.id) for a in answered], dtype=object),
    )
