"""What the rating server's endpoints share: the database gates, the token check, the calls.

:class:`AppServices` lives on ``app.state`` (several apps can live in one process). Endpoints
reach the database only through it: :meth:`AppServices.read` / :meth:`AppServices.write` run a
function in one unit of work on a bounded :class:`~ratingrl.app.gate.WorkGate`, and
:func:`rater_call` does so as the rater a bearer token names, checking the token before the
call may wait for the write lock. Routers of their own (``pairs_api``) use the same names.
Every clip endpoint answers through :func:`clip_response` with a spec from :func:`stored_clip`.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, TypeVar

from fastapi import Depends, HTTPException, Request
from fastapi.responses import FileResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from ratingrl.app import store
from ratingrl.app.db import bytes_to_array
from ratingrl.app.gate import GroupCommitGate, WorkGate
from ratingrl.app.models import Project
from ratingrl.app.render import ClipCache, ClipSpec, RenderError
from ratingrl.app.schema import Database
from ratingrl.app.store import RaterContext

__all__ = [
    "AppServices",
    "KnownTokens",
    "Services",
    "Creds",
    "rater_call",
    "require_operator",
    "unauthorized",
    "stored_clip",
    "clip_response",
]

T = TypeVar("T")


class KnownTokens:
    """Hashes of tokens that named an active rater within the last ``ttl_s`` seconds.

    Only lets a request queue for the write lock without a read first; the write unit checks
    the token again, so a token revoked in the meantime is still refused (401).
    """

    def __init__(self, ttl_s: float = 60.0, size: int = 100_000) -> None:
        self.ttl_s, self.size = ttl_s, size
        self._seen: dict[str, float] = {}

    def known(self, token: str) -> bool:
        seen = self._seen.get(store.hash_token(token))
        return seen is not None and time.monotonic() - seen < self.ttl_s

    def add(self, token: str) -> None:
        if len(self._seen) >= self.size:
            self._seen.clear()
        self._seen[store.hash_token(token)] = time.monotonic()

    def forget(self, token: str) -> None:
        self._seen.pop(store.hash_token(token), None)


@dataclass
class AppServices:
    """What one app's endpoints share, kept on ``app.state`` (several apps live in one process)."""

    database: Database
    cache: ClipCache
    operator_hash: str
    reads: WorkGate
    writes: WorkGate | GroupCommitGate
    renders: WorkGate
    tokens: KnownTokens

    async def read(self, fn: Callable[..., T], *args: object) -> T:
        """``fn(session, *args)`` in a unit of work that only reads (no write lock)."""
        return await self.reads.run(fn, *args)

    async def write(self, fn: Callable[..., T], *args: object) -> T:
        """``fn(session, *args)`` in a writing unit, committed before this returns."""
        return await self.writes.run(fn, *args)

    def close(self) -> None:
        """At shutdown: the gates finish or drop their work (the lifespan closes the rest)."""
        for gate in (self.reads, self.writes, self.renders):
            gate.close()


async def services_of(request: Request) -> AppServices:
    """The app's services (a dependency; async, so FastAPI does not send it to a thread)."""
    return request.app.state.services


_bearer = HTTPBearer(auto_error=False)
Services = Annotated[AppServices, Depends(services_of)]
Creds = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]


def unauthorized(what: str) -> HTTPException:
    """401 for a missing or unknown ``what`` ("rater", "operator") token; says nothing more."""
    return HTTPException(
        401, f"missing or unknown {what} token", headers={"WWW-Authenticate": "Bearer"}
    )


def _as_rater(session: Session, token: str, fn: Callable[..., T], args: tuple) -> T:
    rater = store.rater_context(session, token)
    if rater is None:
        raise unauthorized("rater")
    return fn(session, rater, *args)


def _as_locked_rater(session: Session, token: str, fn: Callable[..., T], args: tuple) -> T:
    """:func:`_as_rater` for a writing unit: the rater's row is locked as it is read (on
    PostgreSQL every change to a rater's queue takes that lock first; one statement fewer)."""
    rater = store.rater_context(session, token, lock=True)
    if rater is None:
        raise unauthorized("rater")
    return fn(session, rater, *args)


def _remember(session: Session, rater: RaterContext, tokens: KnownTokens, token: str) -> None:
    tokens.add(token)


async def rater_call(
    services: AppServices,
    creds: HTTPAuthorizationCredentials | None,
    fn: Callable[..., T],
    *args: object,
    write: bool = True,
) -> T:
    """``fn(session, rater, *args)`` in one unit of work as the rater the token names (else 401).

    ``rater`` is a :class:`~ratingrl.app.store.RaterContext`: the rater and their project's
    fields, read with the token in one query.

    A writing call checks the token before it may wait for the write lock (a read unit, unless
    the token was valid within the last minute), then checks it again inside its unit: bad
    tokens never reach the writer, however many arrive. The unit has committed when this
    returns, so the caller may acknowledge what ``fn`` wrote.
    """
    token = creds.credentials if creds is not None else ""
    if not token or len(token) > 200:
        raise unauthorized("rater")
    if not write:
        return await services.read(_as_rater, token, fn, args)
    if not services.tokens.known(token):
        await services.read(_as_rater, token, _remember, (services.tokens, token))
    try:
        return await services.write(_as_locked_rater, token, fn, args)
    except HTTPException as err:
        if err.status_code == 401:
            services.tokens.forget(token)
        raise


async def require_operator(services: Services, creds: Creds) -> None:
    """A dependency refusing (401) all but the operator token, compared in constant time."""
    given = store.hash_token(creds.credentials) if creds else ""
    if not hmac.compare_digest(given, services.operator_hash):
        raise unauthorized("operator")


def stored_clip(
    key: str,
    env_id: str,
    arrays: tuple[bytes, bytes, bytes | None],
    project: Project,
    variant: bool = False,
) -> ClipSpec:
    """The clip of the stored ``(obs, acts, states)`` (bytes, as the database keeps them; states
    may be None), at the size and frame rate of ``project``, so every clip of a project looks
    alike whichever table it comes from."""
    obs, acts, states = arrays
    return ClipSpec(
        key=key,
        env_id=env_id,
        obs=bytes_to_array(obs),
        acts=bytes_to_array(acts),
        states=None if states is None else bytes_to_array(states),
        width=project.width,
        height=project.height,
        fps=project.fps,
        variant=variant,
    )


async def clip_response(
    services: AppServices, spec_of: Callable[..., ClipSpec | None], *args: object
) -> FileResponse:
    """The MP4 of the clip ``spec_of(session, *args)`` describes (404 when it finds none).

    The spec is read in a unit of work that closes before the clip renders (on the render gate,
    or from the cache), so no transaction stays open for a render. A clip that cannot be
    rendered is a 500 saying why. A clip's URL is a capability naming one content, so browsers
    may keep it for a day.
    """
    spec = await services.read(spec_of, *args)
    if spec is None:
        raise HTTPException(404, "no such clip")
    try:
        path = await services.renders.run(services.cache.get, spec)
    except RenderError as err:
        raise HTTPException(500, f"could not render clip: {err}") from None
    return FileResponse(
        path, media_type="video/mp4", headers={"Cache-Control": "private, max-age=86400"}
    )
