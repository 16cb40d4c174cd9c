"""Comparisons: queueing pairs of segments, the next pair for a rater, answers, undo, progress.

The same rules as the rating queue, for pairs: asking again before answering returns the same
pair; a rater is shown each pair at most once; an answer moves its item from ``shown`` with a
conditional UPDATE, so exactly one of several racing submissions wins, a retry of the same
answer returns the stored row and a different answer is a :class:`Conflict` (undo first).
Answers are append-only rows (answered, skipped, undone) like ratings. Each pair is shown with
its sides drawn at random; an answer records the side the rater chose, and the dataset names
the left clip ``first`` (label 0: left preferred, 1: right, 0.5: equally good).

Pairs need as many answers as the project's ``ratings_per_clip``; a pair shown and unanswered
holds its place for :data:`~ratingrl.app.store.queue.SHOWN_LEASE_S`, as a clip does. Functions
only add and flush: the caller's unit of work commits.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass

import numpy as np
from sqlalchemy import and_, exists, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ratingrl.app.db import (
    Asks,
    ItemStatus,
    PairAnswerRow,
    PairChoice,
    PairItem,
    PairRow,
    PairSegmentRow,
    Project,
    Rater,
    RatingStatus,
    array_to_bytes,
)
from ratingrl.app.errors import AppError, Conflict, NotFound
from ratingrl.app.store.pair_answers import latest_pair_answer
from ratingrl.app.store.projects import new_public_id
from ratingrl.app.store.queue import SHOWN_LEASE_S
from ratingrl.feedback.segments import SegmentSet

__all__ = [
    "PairAnswer",
    "set_asks",
    "project_asks",
    "add_pairs",
    "next_pair",
    "answer_pair",
    "undo_last_pair",
    "pair_progress",
    "pair_sides",
    "pair_clip_for",
]

_ANSWERED = (ItemStatus.RATED, ItemStatus.SKIPPED)


def project_asks(project: Project) -> Asks:
    """What ``project`` asks its raters for (ratings, pairs or both)."""
    return Asks(project.asks)


def set_asks(session: Session, project: Project, asks: str) -> None:
    """Make ``project`` ask for ``asks``: ``ratings``, ``pairs`` or ``both``.

    Changing it later is safe: stored ratings, pairs and answers stay; it only decides which
    page a rater is sent to and whether pairs may be queued and shown.
    """
    try:
        project.asks = Asks(asks)
    except ValueError:
        choices = ", ".join(a.value for a in Asks)
        raise AppError(f"asks must be one of {choices}, got {asks!r}") from None
    session.flush()


def _require_pairs(project: Project) -> None:
    if project_asks(project) == Asks.RATINGS:
        raise Conflict(
            f"project {project.name!r} asks for ratings only; the operator can ask for pairs "
            "(create the project with --asks pairs or --asks both)"
        )


# -- queueing ----------------------------------------------------------------------------------
def _segment_rows(project: Project, segments: SegmentSet, rows: dict) -> list[PairSegmentRow]:
    """One row per segment; a segment given twice in one request is stored once."""
    if segments.horizon != project.clip_length:
        raise AppError(
            f"segments have horizon {segments.horizon}, project {project.name!r} uses clips of "
            f"{project.clip_length} steps"
        )
    out = []
    for i in range(len(segments)):
        arrays = [segments.obs[i], segments.acts[i]]
        arrays += [a[i] for a in (segments.true_rewards, segments.states) if a is not None]
        key = (int(segments.episode_id[i]), int(segments.start[i]), *map(array_to_bytes, arrays))
        if key not in rows:
            rows[key] = PairSegmentRow(
                public_id=new_public_id(),
                project_id=project.id,
                obs=key[2],
                acts=key[3],
                true_rewards=None
                if segments.true_rewards is None
                else array_to_bytes(segments.true_rewards[i]),
                states=None if segments.states is None else array_to_bytes(segments.states[i]),
                episode_id=key[0],
                start=key[1],
            )
        out.append(rows[key])
    return out


def add_pairs(
    session: Session,
    project: Project,
    first: SegmentSet,
    second: SegmentSet,
    priority: np.ndarray | float = 0.0,
    source_tag: str | None = None,
) -> list[int]:
    """Queue ``first[i]`` against ``second[i]`` for comparison; returns the pairs' ids.

    Higher ``priority`` is shown first. Simulator states the segments carry are stored, so the
    clips replay the real robot. Refused (nothing stored) for a project asking ratings only.
    """
    _require_pairs(project)
    if len(first) != len(second) or len(first) == 0:
        raise AppError(
            f"pairs need as many first as second segments, at least one: got {len(first)} "
            f"and {len(second)}"
        )
    first.check_compatible(second, "second segments")
    prio = np.broadcast_to(np.asarray(priority, dtype=np.float64), (len(first),))
    if not np.isfinite(prio).all():
        raise AppError("priority must be finite")
    known: dict = {}
    lefts, rights = _segment_rows(project, first, known), _segment_rows(project, second, known)
    session.add_all(known.values())
    session.flush()
    pairs = [
        PairRow(
            project_id=project.id,
            first_id=a.id,
            second_id=b.id,
            priority=float(p),
            source_tag=source_tag,
        )
        for a, b, p in zip(lefts, rights, prio, strict=True)
    ]
    session.add_all(pairs)
    session.flush()
    return [p.id for p in pairs]


# -- showing -----------------------------------------------------------------------------------
def _eligible_pairs(project: Project, rater: Rater, now: float) -> tuple:
    """Conditions on :class:`PairRow` for pairs this rater may be shown next."""
    mine = exists().where(PairItem.pair_id == PairRow.id, PairItem.rater_id == rater.id)
    taken = (
        select(func.count(PairItem.id))
        .where(
            PairItem.pair_id == PairRow.id,
            or_(
                PairItem.status == ItemStatus.RATED,
                and_(PairItem.status == ItemStatus.SHOWN, PairItem.shown_at > now - SHOWN_LEASE_S),
            ),
        )
        .scalar_subquery()
    )
    return (PairRow.project_id == project.id, ~mine, taken < project.ratings_per_clip)


def _shown_item(session: Session, rater: Rater) -> PairItem | None:
    return session.scalar(
        select(PairItem)
        .where(PairItem.rater_id == rater.id, PairItem.status == ItemStatus.SHOWN)
        .order_by(PairItem.id)
        .limit(1)
    )


def next_pair(session: Session, rater: Rater) -> PairItem | None:
    """The pair this rater should compare now, creating its item; None when none is left.

    A pair shown and not answered comes first (a reload shows the same pair), then the
    highest-priority pair that still needs answers and that this rater has never been shown.
    Two requests of one rater racing meet on the (rater, pair) unique constraint; the loser's
    insert is undone by a savepoint and it takes the winner's item.
    """
    project = session.get(Project, rater.project_id)
    _require_pairs(project)
    for _attempt in range(3):
        item = _shown_item(session, rater)
        if item is not None:
            return item
        now = time.time()
        pair_id = session.scalar(
            select(PairRow.id)
            .where(*_eligible_pairs(project, rater, now))
            .order_by(PairRow.priority.desc(), PairRow.id)
            .limit(1)
        )
        if pair_id is None:
            return None
        item = PairItem(
            public_id=new_public_id(),
            rater_id=rater.id,
            pair_id=pair_id,
            swapped=bool(secrets.randbelow(2)),
            status=ItemStatus.SHOWN,
            shown_at=now,
        )
        try:
            with session.begin_nested():
                session.add(item)
            return item
        except IntegrityError:  # the same rater asked twice at once: take the other's item
            continue
    raise Conflict("could not pick a pair; try again")


def pair_sides(session: Session, item: PairItem) -> tuple[PairSegmentRow, PairSegmentRow]:
    """The (left, right) clips of ``item`` as the rater sees them."""
    pair = session.get(PairRow, item.pair_id)
    first = session.get(PairSegmentRow, pair.first_id)
    second = session.get(PairSegmentRow, pair.second_id)
    return (second, first) if item.swapped else (first, second)


def pair_clip_for(
    session: Session, item_public_id: str, side: str
) -> tuple[PairSegmentRow, Project] | None:
    """The clip on ``side`` (``left``/``right``) of the pair item behind a clip URL, or None.

    The item's random id is the capability, as for rating clips (video tags send no token).
    """
    item = session.scalar(select(PairItem).where(PairItem.public_id == item_public_id))
    if item is None or side not in ("left", "right"):
        return None
    segment = pair_sides(session, item)[0 if side == "left" else 1]
    return segment, session.get(Project, segment.project_id)


# -- answers -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class PairAnswer:
    """``created`` is False when the same answer had already been stored (a retried request)."""

    answer_id: int
    created: bool


def _item_for(session: Session, rater: Rater, pair_id: str) -> PairItem:
    item = None
    if isinstance(pair_id, str) and len(pair_id) == 32:
        item = session.scalar(select(PairItem).where(PairItem.public_id == pair_id))
    if item is None or item.rater_id != rater.id:  # other raters' items do not exist for you
        raise NotFound(f"unknown pair_id {pair_id!r}")
    return item


def _parse_choice(choice: str | None, skip: bool) -> PairChoice | None:
    if skip and choice is not None:
        raise AppError("send either a choice or skip=true, not both")
    if skip:
        return None
    if choice is None:
        raise AppError("choice is required (left, right or equal), or skip=true")
    try:
        return PairChoice(choice)
    except ValueError:
        raise AppError(f"choice must be left, right or equal, got {choice!r}") from None


def answer_pair(
    session: Session, rater: Rater, pair_id: str, choice: str | None, skip: bool = False
) -> PairAnswer:
    """Store a rater's answer (``left``/``right``/``equal``) or skip for a pair shown to them.

    Deterministic under retries and races: the same answer again returns the stored row
    (``created=False``), a different one raises :class:`Conflict`. A refused answer writes
    nothing.
    """
    parsed = _parse_choice(choice, skip)
    item = _item_for(session, rater, pair_id)
    status = RatingStatus.SKIPPED if skip else RatingStatus.RATED
    won = session.execute(
        update(PairItem)
        .where(PairItem.id == item.id, PairItem.status == ItemStatus.SHOWN)
        .values(status=ItemStatus.SKIPPED if skip else ItemStatus.RATED)
    ).rowcount
    if not won:
        session.refresh(item)
        latest = latest_pair_answer(session, item)
        if latest is not None and latest.status == status and latest.choice == parsed:
            return PairAnswer(latest.id, False)
        said = "skipped" if item.status == ItemStatus.SKIPPED else "answered"
        if latest is not None and latest.choice is not None:
            said += f" {latest.choice}"
        raise Conflict(f"pair {pair_id} was already {said}; undo to change it")
    row = PairAnswerRow(
        project_id=rater.project_id,
        item_id=item.id,
        pair_id=item.pair_id,
        rater_id=rater.id,
        choice=parsed,
        status=status,
        shown_at=item.shown_at,
        answered_at=time.time(),
    )
    session.add(row)
    session.flush()
    return PairAnswer(row.id, True)


def _undo_target(session: Session, rater: Rater) -> PairAnswerRow | None:
    """The rater's latest pair answer that is still in force (not itself withdrawn)."""
    rows = session.scalars(
        select(PairAnswerRow)
        .where(PairAnswerRow.rater_id == rater.id)
        .order_by(PairAnswerRow.id.desc())
        .limit(200)
    ).all()
    undone = {r.undoes_id for r in rows if r.status == RatingStatus.UNDONE}
    return next((r for r in rows if r.status != RatingStatus.UNDONE and r.id not in undone), None)


def undo_last_pair(session: Session, rater: Rater) -> PairItem | None:
    """Withdraw the rater's latest pair answer (an ``undone`` row) and show that pair again."""
    target = _undo_target(session, rater)
    if target is None:
        return None
    item = session.get(PairItem, target.item_id)
    latest = latest_pair_answer(session, item)
    if latest is None or latest.id != target.id:
        return None
    now = time.time()
    answered = ItemStatus.SKIPPED if target.status == RatingStatus.SKIPPED else ItemStatus.RATED
    won = session.execute(
        update(PairItem)
        .where(PairItem.id == item.id, PairItem.status == answered)
        .values(status=ItemStatus.SHOWN, shown_at=now)
    ).rowcount
    if not won:  # a concurrent undo got there first; nothing was written here
        return None
    session.add(
        PairAnswerRow(
            project_id=target.project_id,
            item_id=item.id,
            pair_id=item.pair_id,
            rater_id=rater.id,
            choice=None,
            status=RatingStatus.UNDONE,
            shown_at=target.shown_at,
            answered_at=now,
            undoes_id=target.id,
        )
    )
    session.flush()
    session.refresh(item)
    return item


def pair_progress(session: Session, rater: Rater) -> dict[str, int]:
    """``answered`` (pairs this rater answered or skipped) and ``queued`` (still to show)."""
    project = session.get(Project, rater.project_id)
    counts = dict(
        session.execute(
            select(PairItem.status, func.count(PairItem.id))
            .where(PairItem.rater_id == rater.id)
            .group_by(PairItem.status)
        ).all()
    )
    fresh = session.scalar(
        select(func.count(PairRow.id)).where(*_eligible_pairs(project, rater, time.time()))
    )
    answered = sum(int(counts.get(s, 0)) for s in _ANSWERED)
    return {"answered": answered, "queued": int(counts.get(ItemStatus.SHOWN, 0)) + int(fresh)}
