"""A rater as one request needs them: who they are and what their project asks, in one query.

Every rater request starts from the bearer token. :func:`rater_context` turns it into a
:class:`RaterContext` -- the rater's id and name and the fields of their project that the queue
rules and the answer read (scale, ``ratings_per_clip``, ``repeat_every``, fps, instructions,
what the project asks for) -- with one indexed query joining the rater to the project. So a
request loads no ORM object and reads the project once, fresh: nothing is cached across
requests that an operator's change (``set_asks``, a revoked token) could make stale. The only
memo, :func:`scale_of`, maps a project's stored level names to the scale they describe.

The context is a plain value. The store's queue functions take it (or a :class:`Rater` row, for
which :func:`context_of` reads the same fields), and only its ``id`` and ``project_id`` name
rows, so it cannot carry changes of its own back to the database.
"""

from __future__ import annotations

import hmac
import json
from dataclasses import dataclass
from functools import lru_cache

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from ratingrl.app.models import Asks, Project, Rater
from ratingrl.app.store.projects import hash_token
from ratingrl.feedback.segments import RatingScale

__all__ = ["RaterContext", "RaterLike", "rater_context", "context_of", "scale_of"]


@dataclass(frozen=True, slots=True)
class RaterContext:
    """A rater and the fields of their project a request reads (see the module docstring).

    ``locked``: the rater's row was locked in this transaction when it was read (PostgreSQL,
    writing units), so :func:`~ratingrl.app.store.slots.lock_rater` need not lock it again.
    """

    id: int
    name: str
    project_id: int
    project_name: str
    fps: int
    instructions: str
    scale_names: str
    ratings_per_clip: int
    repeat_every: int
    asks: Asks
    locked: bool = False

    @property
    def scale(self) -> RatingScale:
        """The project's rating scale (shared, immutable)."""
        return scale_of(self.scale_names)


RaterLike = Rater | RaterContext
"""What the queue functions take: the request's context, or a rater row (CLI, tests)."""

_FIELDS = (
    Rater.id,
    Rater.name,
    Rater.project_id,
    Project.name,
    Project.fps,
    Project.instructions,
    Project.scale_names,
    Project.ratings_per_clip,
    Project.repeat_every,
    Project.asks,
)
_BY_TOKEN = (
    select(*_FIELDS, Rater.token_hash)
    .join(Project, Project.id == Rater.project_id)
    .where(Rater.token_hash == bindparam("digest"), Rater.active.is_(True))
)
_BY_TOKEN_LOCKED = _BY_TOKEN.with_for_update(of=Rater)  # SQLite: no clause (one writer anyway)
_BY_ID = select(*_FIELDS).join(Project, Project.id == Rater.project_id).where(
    Rater.id == bindparam("rater")
)
"""Statements built once: executing them skips building and hashing the expression each time."""


def rater_context(session: Session, token: str, lock: bool = False) -> RaterContext | None:
    """The active rater holding ``token`` with their project's fields, or None (unknown,
    revoked or malformed token): one indexed query.

    ``lock`` (for a unit that writes) also locks the rater's row on PostgreSQL, which every
    change to a rater's queue takes first (their concurrent requests take turns); then the
    queue functions do not lock it again.
    """
    if not token or len(token) > 200:
        return None
    digest = hash_token(token)
    query = _BY_TOKEN_LOCKED if lock else _BY_TOKEN
    row = session.connection().execute(query, {"digest": digest}).first()
    if row is None or not hmac.compare_digest(row.token_hash, digest):
        return None
    locked = lock and session.get_bind().dialect.name == "postgresql"
    return RaterContext(*row[:-1], locked=locked)


def context_of(session: Session, rater: RaterLike) -> RaterContext:
    """``rater`` as a :class:`RaterContext` (a rater row's project fields read in one query)."""
    if isinstance(rater, RaterContext):
        return rater
    row = session.connection().execute(_BY_ID, {"rater": rater.id}).one()
    return RaterContext(*row)


@lru_cache(maxsize=256)
def scale_of(scale_names: str) -> RatingScale:
    """The scale a project's stored level names (a JSON list) describe.

    A pure function of the stored text, memoised: a changed scale is a different text, so
    nothing here can be stale.
    """
    names = tuple(json.loads(scale_names))
    return RatingScale(len(names), names)
