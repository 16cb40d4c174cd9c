"""What the rating app does to its database, independent of HTTP: one function per action.

The server, the CLI and :class:`~ratingrl.app.source.AppRatingSource` all call these, so the
rules (who sees which clip, what a duplicate submission does, what counts as the rating of a
clip) live in one place. Every function takes a ``Session`` and commits itself, so that when it
returns the change is durable.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass

import numpy as np
from sqlalchemy import and_, exists, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, aliased

from ratingrl.app.db import (
    Project,
    QueueItem,
    Rater,
    RatingRow,
    SegmentRow,
    array_to_bytes,
    bytes_to_array,
)
from ratingrl.feedback.segments import FeedbackError, RatingScale, SegmentSet

__all__ = [
    "AppError",
    "NotFound",
    "Conflict",
    "ProjectConfig",
    "hash_token",
    "create_project",
    "get_project",
    "project_scale",
    "add_segments",
    "add_reference",
    "add_rater",
    "rater_for_token",
    "next_item",
    "submit",
    "undo_last",
    "progress",
    "effective_ratings",
    "undone_ratings",
    "segments_by_id",
    "SubmitResult",
]

SHOWN_LEASE_S = 600.0
"""A clip shown to a rater counts towards ``ratings_per_clip`` for this long without an answer."""
REPEAT_GAP = 3
"""A hidden repeat is shown at the earliest this many ratings after it was scheduled."""


class AppError(ValueError):
    """A request the app refuses; the message says why (shown to the user)."""


class NotFound(AppError):
    pass


class Conflict(AppError):
    pass


@dataclass(frozen=True)
class ProjectConfig:
    """A rating project: what is rated, on which scale, and how clips are shared."""

    name: str
    env_id: str
    scale: RatingScale
    clip_length: int = 50
    fps: int = 25
    width: int = 240
    height: int = 240
    ratings_per_clip: int = 1
    repeat_every: int = 10
    instructions: str = ""

    def __post_init__(self) -> None:
        if not self.name or len(self.name) > 200:
            raise AppError(f"project name must be 1..200 characters, got {self.name!r}")
        if self.clip_length < 1 or self.fps < 1 or self.ratings_per_clip < 1:
            raise AppError("clip_length, fps and ratings_per_clip must be positive")
        if self.repeat_every < 0:
            raise AppError(f"repeat_every must be >= 0 (0 = no repeats), got {self.repeat_every}")
        if not (16 <= self.width <= 1920 and 16 <= self.height <= 1080):
            raise AppError(f"clip size {self.width}x{self.height} is outside 16..1920 x 16..1080")


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _new_id() -> str:
    return secrets.token_hex(16)


# -- projects, segments, raters --------------------------------------------------------------
def create_project(session: Session, config: ProjectConfig) -> Project:
    if session.scalar(select(Project).where(Project.name == config.name)) is not None:
        raise Conflict(f"a project named {config.name!r} exists already")
    project = Project(
        name=config.name,
        env_id=config.env_id,
        scale_names=json.dumps(list(config.scale.names)),
        clip_length=config.clip_length,
        fps=config.fps,
        width=config.width,
        height=config.height,
        ratings_per_clip=config.ratings_per_clip,
        repeat_every=config.repeat_every,
        instructions=config.instructions,
    )
    session.add(project)
    session.commit()
    return project


def get_project(session: Session, name: str | None = None) -> Project:
    """The project called ``name``, or the only project when ``name`` is None."""
    if name is not None:
        project = session.scalar(select(Project).where(Project.name == name))
        if project is None:
            raise NotFound(f"no project named {name!r}")
        return project
    projects = session.scalars(select(Project)).all()
    if len(projects) != 1:
        names = [p.name for p in projects]
        raise NotFound(f"name the project (--project); this database holds {names}")
    return projects[0]


def project_scale(project: Project) -> RatingScale:
    names = tuple(json.loads(project.scale_names))
    return RatingScale(len(names), names)


def _states_of(segments: SegmentSet, states: np.ndarray | None) -> np.ndarray | None:
    """The states to store: given explicitly, else the ones the segments carry (if any)."""
    return segments.states if states is None else np.asarray(states, dtype=np.float64)


def _check_segments(project: Project, segments: SegmentSet, states: np.ndarray | None) -> None:
    if segments.horizon != project.clip_length:
        raise AppError(
            f"segments have horizon {segments.horizon}, project {project.name!r} uses clips of "
            f"{project.clip_length} steps"
        )
    if states is not None and (states.ndim != 3 or states.shape[:2] != segments.obs.shape[:2]):
        raise AppError(
            f"states must have shape {segments.obs.shape[:2]} + (state_dim,), got {states.shape}"
        )


def add_segments(
    session: Session,
    project: Project,
    segments: SegmentSet,
    priority: np.ndarray | float = 0.0,
    states: np.ndarray | None = None,
    source_tag: str | None = None,
) -> list[int]:
    """Queue ``segments`` for rating; higher ``priority`` is shown first. Returns their ids.

    ``states`` defaults to ``segments.states``: stored, they let clips show the simulator.
    """
    states = _states_of(segments, states)
    _check_segments(project, segments, states)
    prio = np.broadcast_to(np.asarray(priority, dtype=np.float64), (len(segments),))
    rows = []
    for i in range(len(segments)):
        rows.append(
            SegmentRow(
                public_id=_new_id(),
                project_id=project.id,
                obs=array_to_bytes(segments.obs[i]),
                acts=array_to_bytes(segments.acts[i]),
                true_rewards=None
                if segments.true_rewards is None
                else array_to_bytes(segments.true_rewards[i]),
                states=None if states is None else array_to_bytes(states[i]),
                episode_id=int(segments.episode_id[i]),
                start=int(segments.start[i]),
                priority=float(prio[i]),
                source_tag=source_tag,
            )
        )
    session.add_all(rows)
    session.commit()
    return [r.id for r in rows]


def add_reference(
    session: Session,
    project: Project,
    segments: SegmentSet,
    level: int,
    states: np.ndarray | None = None,
) -> int:
    """Set the example clip shown for ``level`` of the scale (the first segment of ``segments``)."""
    scale = project_scale(project)
    if not 0 <= level < scale.n:
        raise AppError(f"level {level} is outside the scale 0..{scale.n - 1}")
    states = _states_of(segments, states)
    _check_segments(project, segments, states)
    row = SegmentRow(
        public_id=_new_id(),
        project_id=project.id,
        obs=array_to_bytes(segments.obs[0]),
        acts=array_to_bytes(segments.acts[0]),
        states=None if states is None else array_to_bytes(states[0]),
        reference_level=level,
    )
    session.add(row)
    session.commit()
    return row.id


def add_rater(session: Session, project: Project, name: str) -> str:
    """Create a rater and return their token (shown once; only its hash is stored)."""
    name = name.strip()
    if not name or len(name) > 200:
        raise AppError(f"rater name must be 1..200 characters, got {name!r}")
    if session.scalar(select(Rater).where(Rater.project_id == project.id, Rater.name == name)):
        raise Conflict(f"rater {name!r} exists already in project {project.name!r}")
    token = secrets.token_urlsafe(32)
    session.add(Rater(project_id=project.id, name=name, token_hash=hash_token(token)))
    session.commit()
    return token


def rater_for_token(session: Session, token: str) -> Rater | None:
    if not token or len(token) > 200:
        return None
    digest = hash_token(token)
    rater = session.scalar(select(Rater).where(Rater.token_hash == digest))
    if rater is None or not rater.active or not hmac.compare_digest(rater.token_hash, digest):
        return None
    return rater


# -- the queue -------------------------------------------------------------------------------
def _done_count(session: Session, rater: Rater) -> int:
    return session.scalar(
        select(func.count(QueueItem.id)).where(
            QueueItem.rater_id == rater.id, QueueItem.status.in_(("rated", "skipped"))
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
                QueueItem.status == "rated",
                and_(QueueItem.status == "shown", QueueItem.shown_at > now - SHOWN_LEASE_S),
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


def next_item(session: Session, rater: Rater) -> QueueItem | None:
    """The clip this rater should rate now, creating its queue item; None when nothing is left.

    Order: a clip already shown and not answered (a reload shows the same clip), then a hidden
    repeat that is due, then the highest-priority clip that still needs ratings.
    """
    for _attempt in range(3):
        now = time.time()
        item = session.scalar(
            select(QueueItem)
            .where(QueueItem.rater_id == rater.id, QueueItem.status == "shown")
            .order_by(QueueItem.id)
            .limit(1)
        )
        if item is not None:
            session.commit()
            return item
        done = _done_count(session, rater)
        item = session.scalar(
            select(QueueItem)
            .where(
                QueueItem.rater_id == rater.id,
                QueueItem.status == "pending",
                QueueItem.due_after <= done,
            )
            .order_by(QueueItem.id)
            .limit(1)
        )
        if item is not None:
            item.status, item.shown_at = "shown", now
            session.commit()
            return item
        project = session.get(Project, rater.project_id)
        segment_id = session.scalar(
            select(SegmentRow.id)
            .where(*_eligible_segments(project, rater, now))
            .order_by(SegmentRow.priority.desc(), SegmentRow.id)
            .limit(1)
        )
        if segment_id is None:
            session.commit()
            return None
        item = QueueItem(
            public_id=_new_id(),
            rater_id=rater.id,
            segment_id=segment_id,
            status="shown",
            shown_at=now,
        )
        session.add(item)
        try:
            session.commit()
            return item
        except IntegrityError:  # the same rater asked twice at once: take the other's item
            session.rollback()
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


def submit(
    session: Session, rater: Rater, clip_id: str, value: int | None, skip: bool = False
) -> SubmitResult:
    """Store one rating (or a skip) for a clip shown to ``rater``; committed when this returns.

    Deterministic under retries and races: the item moves from ``shown`` to ``rated``/``skipped``
    with a conditional UPDATE, so exactly one submission wins. A later submission with the same
    answer returns the stored row (``created=False``); a different answer raises
    :class:`Conflict` (undo first to change a rating).
    """
    project = session.get(Project, rater.project_id)
    scale = project_scale(project)
    if skip and value is not None:
        raise AppError("send either a rating or skip=true, not both")
    if not skip:
        if value is None:
            raise AppError("rating is required (or skip=true)")
        try:
            scale.validate(np.array([value]), "rating")
        except FeedbackError as err:
            raise AppError(str(err)) from None
    item = _item_for(session, rater, clip_id)
    status = "skipped" if skip else "rated"
    now = time.time()
    won = session.execute(
        update(QueueItem)
        .where(QueueItem.id == item.id, QueueItem.status == "shown")
        .values(status=status)
    ).rowcount
    if not won:
        session.rollback()
        session.refresh(item)
        latest = _latest_row(session, item)
        session.commit()
        if item.status == "pending":
            raise NotFound(f"unknown clip_id {clip_id!r}")
        if latest is not None and latest.status == status and latest.value == value:
            return SubmitResult(latest.id, False)
        raise Conflict(
            f"clip {clip_id} was already answered ({item.status}"
            f"{'' if latest is None or latest.value is None else f' {latest.value}'}); "
            "undo to change it"
        )
    row = RatingRow(
        project_id=project.id,
        item_id=item.id,
        rater_id=rater.id,
        segment_id=item.segment_id,
        value=None if skip else int(value),
        scale_n=scale.n,
        status=status,
        is_repeat=item.is_repeat,
        shown_at=item.shown_at,
        answered_at=now,
    )
    session.add(row)
    if status == "rated" and not item.is_repeat:
        _maybe_schedule_repeat(session, project, rater)
    session.commit()
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
            QueueItem.status == "rated",
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
            public_id=_new_id(),
            rater_id=rater.id,
            segment_id=segment_id,
            is_repeat=True,
            status="pending",
            due_after=_done_count(session, rater) + REPEAT_GAP,
        )
    )


def undo_last(session: Session, rater: Rater) -> QueueItem | None:
    """Withdraw the rater's latest answer (append an ``undone`` row) and show that clip again."""
    rows = session.scalars(
        select(RatingRow)
        .where(RatingRow.rater_id == rater.id)
        .order_by(RatingRow.id.desc())
        .limit(200)
    ).all()
    undone = {r.undoes_id for r in rows if r.status == "undone"}
    target = next((r for r in rows if r.status != "undone" and r.id not in undone), None)
    if target is None:
        session.commit()
        return None
    item = session.get(QueueItem, target.item_id)
    latest = _latest_row(session, item)
    if latest is None or latest.id != target.id:
        session.commit()
        return None
    now = time.time()
    won = session.execute(
        update(QueueItem)
        .where(QueueItem.id == item.id, QueueItem.status == target.status)
        .values(status="shown", shown_at=now)
    ).rowcount
    if not won:
        session.rollback()
        return None
    session.add(
        RatingRow(
            project_id=target.project_id,
            item_id=item.id,
            rater_id=rater.id,
            segment_id=item.segment_id,
            value=None,
            scale_n=target.scale_n,
            status="undone",
            is_repeat=item.is_repeat,
            shown_at=target.shown_at,
            answered_at=now,
            undoes_id=target.id,
        )
    )
    session.commit()
    session.refresh(item)
    return item


def progress(session: Session, rater: Rater) -> dict[str, int]:
    """``rated`` (answered by this rater) and ``queued`` (still to show them, as of now)."""
    project = session.get(Project, rater.project_id)
    done = _done_count(session, rater)
    waiting = session.scalar(
        select(func.count(QueueItem.id)).where(
            QueueItem.rater_id == rater.id, QueueItem.status.in_(("shown", "pending"))
        )
    )
    fresh = session.scalar(
        select(func.count(SegmentRow.id)).where(*_eligible_segments(project, rater, time.time()))
    )
    session.commit()
    return {"rated": int(done), "queued": int(waiting + fresh)}


# -- reading ratings back --------------------------------------------------------------------
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
        RatingRow.status == "rated",
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
            RatingRow.status == "undone",
            target.status == "rated",
            target.is_repeat.is_(False),
        )
        .order_by(RatingRow.id)
    )
    return [(int(undo), int(rating)) for undo, rating in session.execute(query).all()]


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
