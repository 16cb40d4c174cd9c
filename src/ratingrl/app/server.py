"""The rating server: a FastAPI app built by :func:`create_app`, with no module-level state.

JSON API (the page uses it; scripts may too). Raters send ``Authorization: Bearer <token>``:

* ``GET /api/next`` -> ``{"clip_id", "video_url", "scale": {"n", "names"}, "progress", ...}``;
  ``clip_id`` is null when the rater's queue is empty. Asking again before answering returns
  the same clip.
* ``POST /api/ratings`` ``{"clip_id": str, "rating": int}`` (or ``{"clip_id", "skip": true}``)
  -> 201 once the rating is committed. The same answer again -> 200 ``{"created": false}``; a
  different answer to an answered clip -> 409 (undo first). Rating outside the scale or wrong
  types -> 422, unknown clip (or another rater's) -> 404, bad token -> 401, body over
  ``max_body_bytes`` -> 413. A refused request changes nothing stored: each request is one
  unit of work, committed before the response and rolled back when the store refuses it.
  Refusals are ``{"detail": "<one line>"}``, from exception handlers for the store's errors.
* ``POST /api/undo`` withdraws the rater's latest answer and returns that clip again.
* ``GET /api/references`` -> one example clip per level of the scale (where the operator set one).
* ``GET /clips/<id>.mp4`` -> the clip; the random id is the capability (video tags cannot send
  headers), files come only from the clip cache folder.
* ``GET /api/operator/stats`` (operator token) -> ratings per rater, time per rating,
  Krippendorff's alpha on clips rated by several raters, self-consistency on hidden repeats.

Pages: ``/`` (raters: open ``/#token=...``; the token stays in the fragment, never in server
logs) and ``/operator`` (``/operator#token=...``).
"""

import hmac
import logging
import re
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request
from fastapi.responses import FileResponse, JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt
from sqlalchemy.orm import Session

from ratingrl.app import store
from ratingrl.app.db import QueueItem, Rater, bytes_to_array
from ratingrl.app.errors import AppError, Conflict, NotFound
from ratingrl.app.render import ClipCache, ClipRenderer, ClipSpec, RenderError
from ratingrl.app.schema import Database, open_database
from ratingrl.app.stats import project_stats

__all__ = ["ServerConfig", "create_app"]

STATIC_DIR = Path(__file__).parent / "static"
_CLIP_KEY = re.compile(r"^(ref-)?([0-9a-f]{32})$")
_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServerConfig:
    """Limits of the server (defaults suit one lab's raters)."""

    max_body_bytes: int = 16 * 1024


class RatingIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    clip_id: str = Field(min_length=1, max_length=64)
    rating: StrictInt | None = None
    skip: StrictBool = False


class _BodyLimit:
    """ASGI middleware: refuse request bodies over ``limit`` bytes with 413, before parsing."""

    def __init__(self, app, limit: int) -> None:  # type: ignore[no-untyped-def]
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):  # type: ignore[no-untyped-def]
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        too_big = JSONResponse({"detail": f"body over {self.limit} bytes"}, status_code=413)
        if length is not None:
            try:
                if int(length) > self.limit:
                    return await too_big(scope, receive, send)
            except ValueError:
                return await JSONResponse({"detail": "bad Content-Length"}, 400)(
                    scope, receive, send
                )
        chunks: list[bytes] = []
        size = 0
        more = scope["method"] in ("POST", "PUT", "PATCH")
        while more:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.limit:
                return await too_big(scope, receive, send)
            more = message.get("more_body", False)
        body = b"".join(chunks)
        sent = False

        async def replay():  # type: ignore[no-untyped-def]
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        return await self.app(
            scope, replay if scope["method"] in ("POST", "PUT", "PATCH") else receive, send
        )


_SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; media-src 'self'; img-src 'self' data:; "
        "style-src 'self'; script-src 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}


@dataclass
class _Services:
    """What one app's endpoints share, kept on ``app.state`` (several apps live in one process)."""

    database: Database
    cache: ClipCache
    operator_hash: str
    write_lock: "threading.Lock | None"

    @contextmanager
    def unit(self) -> Iterator[Session]:
        """One request's unit of work: committed when the block ends, before the response."""
        # SQLite takes one writer at a time; queueing writers on a lock here (FIFO-ish, no
        # sleeps) instead of in SQLite's busy handler (sleep and retry) cuts tail latency.
        with self.write_lock or nullcontext(), self.database.unit() as session:
            yield session


def _services(request: Request) -> _Services:
    return request.app.state.services


_bearer = HTTPBearer(auto_error=False)
Services = Annotated[_Services, Depends(_services)]
Creds = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]


def _unauthorized(what: str) -> HTTPException:
    return HTTPException(
        401, f"missing or unknown {what} token", headers={"WWW-Authenticate": "Bearer"}
    )


@contextmanager
def _rater_unit(
    services: _Services, creds: HTTPAuthorizationCredentials | None
) -> Iterator[tuple[Session, Rater]]:
    """The request's unit of work and the rater its token names (401 if none, nothing written)."""
    with services.unit() as session:
        rater = store.rater_for_token(session, creds.credentials) if creds else None
        if rater is None:
            raise _unauthorized("rater")
        yield session, rater


def _require_operator(services: Services, creds: Creds) -> None:
    given = store.hash_token(creds.credentials) if creds else ""
    if not hmac.compare_digest(given, services.operator_hash):
        raise _unauthorized("operator")


def _refusal(status: int):  # type: ignore[no-untyped-def]
    """An exception handler answering ``status`` with the error's message on one JSON line."""

    async def handler(_request: Request, err: Exception) -> JSONResponse:
        return JSONResponse({"detail": " ".join(str(err).split())}, status_code=status)

    return handler


def _install_error_handlers(app: FastAPI) -> None:
    """The store's refusals become HTTP answers; the most specific class wins (MRO lookup)."""
    app.add_exception_handler(NotFound, _refusal(404))
    app.add_exception_handler(Conflict, _refusal(409))
    app.add_exception_handler(AppError, _refusal(422))


routes = APIRouter()


def _clip_payload(session: Session, rater: Rater, item: QueueItem | None) -> dict:
    project = store.project_of(session, rater)
    return {
        "clip_id": None if item is None else item.public_id,
        "video_url": None if item is None else f"/clips/{item.public_id}.mp4",
        "scale": store.project_scale(project).to_dict(),
        "fps": project.fps,
        "project": project.name,
        "instructions": project.instructions,
        "rater": rater.name,
        "progress": store.progress(session, rater),
    }


@routes.get("/api/next")
def api_next(services: Services, creds: Creds) -> dict:
    with _rater_unit(services, creds) as (session, rater):
        return _clip_payload(session, rater, store.next_item(session, rater))


@routes.post("/api/ratings", status_code=201)
def api_rate(body: RatingIn, services: Services, creds: Creds) -> JSONResponse:
    with _rater_unit(services, creds) as (session, rater):
        result = store.submit(session, rater, body.clip_id, body.rating, skip=body.skip)
    # the unit has committed: only now is the rating acknowledged
    payload = {"rating_id": result.rating_id, "created": result.created}
    return JSONResponse(payload, status_code=201 if result.created else 200)


@routes.post("/api/undo")
def api_undo(services: Services, creds: Creds) -> dict:
    with _rater_unit(services, creds) as (session, rater):
        item = store.undo_last(session, rater)
        return {**_clip_payload(session, rater, item), "undone": item is not None}


@routes.get("/api/references")
def api_references(services: Services, creds: Creds) -> dict:
    with _rater_unit(services, creds) as (session, rater):
        project = store.project_of(session, rater)
        scale = store.project_scale(project)
        latest = store.reference_clips(session, project)
    return {
        "references": [
            {
                "level": level,
                "name": scale.names[level],
                "video_url": f"/clips/ref-{latest[level].public_id}.mp4",
            }
            for level in range(scale.n)
            if level in latest
        ]
    }


@routes.get("/clips/{name}")
def clip(name: str, services: Services) -> FileResponse:
    if not name.endswith(".mp4") or not (match := _CLIP_KEY.match(name[:-4])):
        raise HTTPException(404, "no such clip")
    with services.database.unit() as session:  # never held while a clip renders
        found = store.clip_for(session, match.group(2), reference=bool(match.group(1)))
    if found is None:
        raise HTTPException(404, "no such clip")
    segment, project = found
    spec = ClipSpec(
        key=segment.public_id,
        env_id=project.env_id,
        obs=bytes_to_array(segment.obs),
        acts=bytes_to_array(segment.acts),
        states=None if segment.states is None else bytes_to_array(segment.states),
        width=project.width,
        height=project.height,
        fps=project.fps,
    )
    try:
        path = services.cache.get(spec)
    except RenderError as err:
        raise HTTPException(500, f"could not render clip: {err}") from None
    return FileResponse(
        path, media_type="video/mp4", headers={"Cache-Control": "private, max-age=86400"}
    )


@routes.get("/api/operator/stats", dependencies=[Depends(_require_operator)])
def operator_stats(services: Services, project: str | None = None) -> dict:
    with services.unit() as session:
        names = [project] if project else store.project_names(session)
        return {
            "projects": [project_stats(session, store.get_project(session, n)) for n in names]
        }


@routes.get("/healthz")
def healthz() -> dict:
    return {"ok": True}


@routes.get("/", include_in_schema=False)
def index() -> FileResponse:
    return FileResponse(STATIC_DIR / "index.html")


@routes.get("/operator", include_in_schema=False)
def operator_page() -> FileResponse:
    return FileResponse(STATIC_DIR / "operator.html")


async def _security_headers(request: Request, call_next):  # type: ignore[no-untyped-def]
    response = await call_next(request)
    for name, value in _SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    if request.url.path.startswith("/api/"):
        response.headers["Cache-Control"] = "no-store"
    return response


def create_app(
    db_url: str,
    clip_dir: str | Path,
    operator_token: str,
    config: ServerConfig | None = None,
    renderer: ClipRenderer | None = None,
) -> FastAPI:
    """The rating server for the database at ``db_url``, caching clips in ``clip_dir``.

    ``operator_token`` guards the operator page and API. The database is first brought to the
    current schema revision (an older one is upgraded, and a line logged). Everything the app
    needs is created here and kept on ``app.state``, so several apps (tests) can live in one
    process.
    """
    if not operator_token or len(operator_token) < 8:
        raise ValueError("operator_token must be at least 8 characters")
    config = config or ServerConfig()
    database = open_database(db_url)
    if database.upgrade.message:
        _log.warning(database.upgrade.message)
    renderer = renderer or ClipRenderer()
    services = _Services(
        database=database,
        cache=ClipCache(clip_dir, renderer),
        operator_hash=store.hash_token(operator_token),
        write_lock=threading.Lock() if database.engine.dialect.name == "sqlite" else None,
    )

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        renderer.close()
        database.close()

    app = FastAPI(title="ratingrl rating app", docs_url=None, redoc_url=None, lifespan=lifespan)
    app.state.services = services
    app.add_middleware(_BodyLimit, limit=config.max_body_bytes)
    app.middleware("http")(_security_headers)
    _install_error_handlers(app)
    app.include_router(routes)
    from ratingrl.app.pairs_api import router as pairs  # imported here: it builds on this module
    app.include_router(pairs)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    return app
