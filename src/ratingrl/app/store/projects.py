"""Projects, their clips (segments and reference examples) and raters: creating and finding them,
and the operator's rater management (list with counts, revoke, new token).

Every function takes the caller's ``Session`` and only adds and flushes: the caller commits the
whole unit (:func:`ratingrl.app.db.unit_of_work`).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass

import numpy as np
from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from ratingrl.app.db import (
    PairAnswerRow,
    PairItem,
    Project,
    QueueItem,
    Rater,
    RatingRow,
    RatingStatus,
    SegmentRow,
    array_to_bytes,
)
from ratingrl.app.errors import AppError, Conflict, NotFound
from ratingrl.app.store.slots import clips_added
from ratingrl.feedback.segments import RatingScale, SegmentSet

__all__ = [
    "ProjectConfig",
    "hash_token",
    "new_public_id",
    "create_project",
    "get_project",
    "project_names",
    "project_of",
    "project_scale",
    "add_segments",
    "add_reference",
    "count_clips",
    "reference_clips",
    "clip_for",
    "add_rater",
    "rater_for_token",
    "project_raters",
    "rater_names",
    "RaterSummary",
    "find_rater",
    "revoke_rater",
    "rotate_token",
    "rater_summaries",
]


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
    """What is stored of a token: its SHA-256, so a copied database does not leak tokens."""
    return hashlib.sha256(token.encode()).hexdigest()


def new_public_id() -> str:
    """A random id for URLs: unguessable, so knowing one clip's id tells nothing of others."""
    return secrets.token_hex(16)


# -- projects --------------------------------------------------------------------------------
def create_project(session: Session, config: ProjectConfig) -> Project:
    """Add the project ``config`` describes; a second project of the same name is a Conflict."""
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
    session.flush()
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


def project_names(session: Session) -> list[str]:
    """Every project's name, oldest first (the operator page lists them all)."""
    return list(session.scalars(select(Project.name).order_by(Project.id)).all())


def project_of(session: Session, rater: Rater) -> Project:
    """The project ``rater`` belongs to (a rater rates in exactly one project)."""
    return session.get(Project, rater.project_id)


def project_scale(project: Project) -> RatingScale:
    """The project's rating scale, rebuilt from its stored level names."""
    names = tuple(json.loads(project.scale_names))
    return RatingScale(len(names), names)


# -- clips -----------------------------------------------------------------------------------
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
                public_id=new_public_id(),
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
    session.flush()
    clips_added(session, project, rows)  # each gets its slots in the rating queue
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
        public_id=new_public_id(),
        project_id=project.id,
        obs=array_to_bytes(segments.obs[0]),
        acts=array_to_bytes(segments.acts[0]),
        states=None if states is None else array_to_bytes(states[0]),
        reference_level=level,
    )
    session.add(row)
    session.flush()
    return row.id


def count_clips(session: Session, project: Project) -> int:
    """How many clips the project queues for rating (reference examples not counted)."""
    return int(
        session.scalar(
            select(func.count(SegmentRow.id)).where(
                SegmentRow.project_id == project.id, SegmentRow.reference_level.is_(None)
            )
        )
    )


def reference_clips(session: Session, project: Project) -> dict[int, SegmentRow]:
    """``{level: example clip}``; when a level was set several times, the latest counts."""
    rows = session.scalars(
        select(SegmentRow)
        .where(SegmentRow.project_id == project.id, SegmentRow.reference_level.is_not(None))
        .order_by(SegmentRow.id)
    ).all()
    return {r.reference_level: r for r in rows}


def clip_for(
    session: Session, public_id: str, reference: bool
) -> tuple[SegmentRow, Project] | None:
    """The segment behind a clip URL and its project, or None when there is no such clip.

    A rater's clip is addressed by its queue item's id (so a hidden repeat has an id of its
    own); a reference example by the segment's id.
    """
    if reference:
        segment = session.scalar(
            select(SegmentRow).where(
                SegmentRow.public_id == public_id, SegmentRow.reference_level.is_not(None)
            )
        )
    else:
        item = session.scalar(select(QueueItem).where(QueueItem.public_id == public_id))
        segment = None if item is None else session.get(SegmentRow, item.segment_id)
    if segment is None:
        return None
    return segment, session.get(Project, segment.project_id)


# -- raters ----------------------------------------------------------------------------------
def add_rater(session: Session, project: Project, name: str) -> str:
    """Create a rater and return their token (shown once; only its hash is stored)."""
    name = name.strip()
    if not name or len(name) > 200:
        raise AppError(f"rater name must be 1..200 characters, got {name!r}")
    if session.scalar(select(Rater).where(Rater.project_id == project.id, Rater.name == name)):
        raise Conflict(f"rater {name!r} exists already in project {project.name!r}")
    token = secrets.token_urlsafe(32)
    session.add(Rater(project_id=project.id, name=name, token_hash=hash_token(token)))
    session.flush()
    return token


def rater_for_token(session: Session, token: str) -> Rater | None:
    """The active rater holding ``token``, or None (unknown, revoked or malformed token)."""
    if not token or len(token) > 200:
        return None
    digest = hash_token(token)
    rater = session.scalar(select(Rater).where(Rater.token_hash == digest))
    if rater is None or not rater.active or not hmac.compare_digest(rater.token_hash, digest):
        return None
    return rater


def project_raters(session: Session, project: Project) -> list[Rater]:
    """The project's raters, in the order they were added."""
    return list(
        session.scalars(
            select(Rater).where(Rater.project_id == project.id).order_by(Rater.id)
        ).all()
    )


def rater_names(session: Session, project: Project) -> dict[int, str]:
    """``{rater id: name}``: datasets name raters, the ratings table holds their ids."""
    return {r.id: r.name for r in project_raters(session, project)}


# -- the operator's rater management -----------------------------------------------------------
@dataclass(frozen=True)
class RaterSummary:
    """One rater as ``ratingrl app raters`` lists them.

    ``ratings``: current ratings (withdrawn ones and hidden repeats not counted, as on the
    operator page); ``pairs``: current comparison answers; ``skips``: clips and pairs skipped;
    ``last_active``: Unix time of their latest answer, skip, undo or clip shown (None: never).
    """

    name: str
    active: bool
    ratings: int
    pairs: int
    skips: int
    last_active: float | None
    created_at: float


def find_rater(session: Session, project: Project, name: str) -> Rater:
    """The project's rater called ``name`` (active or not); NotFound names the project's raters."""
    rater = session.scalar(
        select(Rater).where(Rater.project_id == project.id, Rater.name == name.strip())
    )
    if rater is None:
        names = [r.name for r in project_raters(session, project)]
        raise NotFound(f"no rater named {name!r} in project {project.name!r}; raters: {names}")
    return rater


def revoke_rater(session: Session, project: Project, name: str) -> Rater:
    """Refuse the rater's token from now on (401); their ratings stay, in stats and exports.

    For a leaked token or a person who should stop: deleting the rater would orphan the
    ratings that name them. :func:`rotate_token` lets them in again with a new token.
    """
    rater = find_rater(session, project, name)
    rater.active = False
    session.flush()
    return rater


def rotate_token(session: Session, project: Project, name: str) -> str:
    """Give the rater a new token and return it (shown once); the old one is refused from now on.

    A revoked rater is active again: after a leak, revoke at once, then rotate when the person
    should rate again with a token only they hold.
    """
    rater = find_rater(session, project, name)
    token = secrets.token_urlsafe(32)
    rater.token_hash = hash_token(token)
    rater.active = True
    session.flush()
    return token


def _counts(session: Session, rows, answers: type) -> tuple[dict, dict]:  # type: ignore[no-untyped-def]
    """``{rater id: current answers}`` and ``{rater id: (skips, latest answer time)}`` from one
    append-only answers table (``RatingRow`` or ``PairAnswerRow``); ``rows``: the project's."""
    latest = select(func.max(answers.id)).where(rows).group_by(answers.item_id)
    current = select(answers.rater_id, func.count()).where(
        answers.id.in_(latest), answers.status == RatingStatus.RATED
    )
    if answers is RatingRow:  # hidden repeats measure raters; they are not ratings given
        current = current.where(RatingRow.is_repeat.is_(False))
    skipped = func.sum(case((answers.status == RatingStatus.SKIPPED, 1), else_=0))
    history = select(answers.rater_id, skipped, func.max(answers.answered_at)).where(rows)
    given = dict(session.execute(current.group_by(answers.rater_id)).all())
    other = {r: (s, t) for r, s, t in session.execute(history.group_by(answers.rater_id)).all()}
    return given, other


def rater_summaries(session: Session, project: Project) -> list[RaterSummary]:
    """Every rater of the project with what they did, in the order they were added (a few
    grouped queries, whatever the number of raters)."""
    ratings, rating_history = _counts(session, RatingRow.project_id == project.id, RatingRow)
    pairs, pair_history = _counts(session, PairAnswerRow.project_id == project.id, PairAnswerRow)
    shown: dict[int, float | None] = {}
    for item in (QueueItem, PairItem):
        query = (
            select(item.rater_id, func.max(item.shown_at))
            .join(Rater, Rater.id == item.rater_id)
            .where(Rater.project_id == project.id)
            .group_by(item.rater_id)
        )
        for rater_id, when in session.execute(query).all():
            shown[rater_id] = _latest(when, shown.get(rater_id))
    out = []
    for rater in project_raters(session, project):
        skips_r, answered_r = rating_history.get(rater.id, (0, None))
        skips_p, answered_p = pair_history.get(rater.id, (0, None))
        out.append(
            RaterSummary(
                name=rater.name,
                active=bool(rater.active),
                ratings=int(ratings.get(rater.id, 0)),
                pairs=int(pairs.get(rater.id, 0)),
                skips=int(skips_r or 0) + int(skips_p or 0),
                last_active=_latest(answered_r, answered_p, shown.get(rater.id)),
                created_at=float(rater.created_at),
            )
        )
    return out


def _latest(*times: float | None) -> float | None:
    known = [float(t) for t in times if t is not None]
    return max(known) if known else None
