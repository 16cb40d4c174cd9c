"""The rating server: a FastAPI app built by :func:`create_app`, with no module-level state.

JSON API (the page uses it; scripts may too). Raters send ``Authorization: Bearer <token>``:

* ``GET /api/next`` -> ``{"clip_id", "video_url", "scale": {"n", "names"}, "progress", ...}``;
  ``clip_id`` is null when the rater's queue is empty. Asking again before answering returns
  the same clip.
* ``POST /api/ratings`` ``{"clip_id": str, "rating": int}`` (or ``{"clip_id", "skip": true}``)
  -> 201 once the rating is committed. The same answer again -> 200 ``{"created": false}``; a
  different answer to an answered clip -> 409 (undo first). Rating outside the scale, a number
  that is not a small integer (NaN, infinities, 1e400, 2**64) or wrong types -> 422, unknown
  clip (or another rater's) -> 404, bad token -> 401, body over ``max_body_bytes`` -> 413. A
  refused request changes nothing stored: each request is one unit of work, committed before
  the response and rolled back when the store refuses it. Refusals are
  ``{"detail": "<one line>"}``, from the exception handlers in :mod:`ratingrl.app.web`.
* ``POST /api/undo`` withdraws the rater's latest answer and returns that clip again.
* ``GET /api/references`` -> one example clip per level of the scale (where the operator set one).
* ``GET /clips/<id>.mp4`` -> the clip; the random id is the capability (video tags cannot send
  headers), files come only from the clip cache folder.
* ``GET /api/operator/stats`` (operator token) -> ratings per rater, time per rating,
  Krippendorff's alpha on clips rated by several raters, self-consistency on hidden repeats.
* ``GET /api/operator/dashboard?project=...`` (operator token) -> the dashboard's numbers
  (:mod:`ratingrl.app.operator_api`).
* ``GET /healthz`` -> ``{"ok": true}`` from the event loop, whatever the database is doing.

Under load: endpoints are ``async``; every unit of work runs on a bounded gate
(:mod:`ratingrl.app.gate`: reads, writes, clip rendering), and a request the server cannot
start soon is answered 503 with ``Retry-After`` instead of queueing without bound. A token is
checked before a request may wait for the write lock: in a read unit, or from the tokens that
were valid in the last minute; the write unit checks it again, so a revoked token is refused
there, in the one query that also reads the fields of the rater's project the answer needs
(fresh at every request: nothing is cached across requests). On SQLite the writes run on one
thread, in arrival order, and those that arrive while it commits share the next commit (all
answered after it; a refused one changes nothing stored).

Pages: ``/`` (raters: open ``/#token=...``; the token stays in the fragment, never in server
logs) and ``/operator`` (``/operator#token=...``).
"""

import json
import logging
import os
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, fields
from functools import partial
from pathlib import Path

from fastapi import APIRouter, Depends, FastAPI, HTTPException
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt
from sqlalchemy.orm import Session

from ratingrl.app import store
from ratingrl.app.gate import GroupCommitGate, WorkGate
from ratingrl.app.render import ClipCache, ClipRenderer, ClipSpec
from ratingrl.app.schema import Database, open_database
from ratingrl.app.services import (
    AppServices,
    Creds,
    KnownTokens,
    Services,
    clip_response,
    rater_call,
    require_operator,
    stored_clip,
)
from ratingrl.app.stats import project_stats
from ratingrl.app.store import RaterContext
from ratingrl.app.web import BodyLimit, SecurityHeaders, install_error_handlers

__all__ = ["ServerConfig", "create_app", "app_from_environment", "SERVE_ENV", "STATIC_DIR"]

STATIC_DIR = Path(__file__).parent / "static"
_CLIP_KEY = re.compile(r"^(ref-)?([0-9a-f]{32})$")
_log = logging.getLogger(__name__)
RATING_BOUND = 2**31
"""Ratings are levels of a small scale: a number beyond this is refused before the store."""


@dataclass(frozen=True)
class ServerConfig:
    """Limits of the server (defaults suit one lab's raters on this project's 2-core machines).

    ``read_threads`` / ``render_threads``: threads running units of work that read, and clip
    rendering. Writes: on SQLite one thread, which commits the writes that arrived while it was
    busy together, at most ``group_commit`` of them (1: a transaction per request); on
    PostgreSQL ``write_threads`` threads, a transaction per request. ``max_waiting``: requests
    one of those pools holds (running and queued) before it answers 503; ``max_wait_s``: the
    longest a request waits for a database thread before it is answered 503 instead.
    """

    max_body_bytes: int = 16 * 1024
    read_threads: int = 2
    write_threads: int = 8
    render_threads: int = 2
    group_commit: int = 64
    max_waiting: int = 512
    max_wait_s: float = 2.0

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            number = isinstance(value, (int, float)) and not isinstance(value, bool)
            seconds = f.name == "max_wait_s"  # a duration; the rest are counts
            if not (number and (value > 0 if seconds else value >= 1)):
                rule = "> 0" if seconds else ">= 1"
                raise ValueError(f"ServerConfig.{f.name} must be a number {rule}, got {value!r}")

    def gates(self, database: Database) -> tuple[WorkGate, WorkGate | GroupCommitGate, WorkGate]:
        """The read, write and render gates of a server of ``database``."""
        wait, most = self.max_wait_s, self.max_waiting
        if database.engine.dialect.name == "sqlite":
            writes = GroupCommitGate("write", database.unit, most, wait, self.group_commit)
        else:
            writes = WorkGate("write", self.write_threads, most, wait, database.unit)
        return (
            WorkGate("read", self.read_threads, most, wait, partial(database.unit, write=False)),
            writes,
            WorkGate("render", self.render_threads, most, max(wait, 30.0)),
        )


class RatingIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    clip_id: str = Field(min_length=1, max_length=64)
    rating: StrictInt | None = Field(default=None, gt=-RATING_BOUND, lt=RATING_BOUND)
    skip: StrictBool = False


routes = APIRouter()


def _clip_payload(rater: RaterContext, public_id: str | None, progress: dict) -> dict:
    """What ``/api/next`` and ``/api/undo`` answer: the clip, the project's fields (read with
    the token) and the rater's progress."""
    return {
        "clip_id": public_id,
        "video_url": None if public_id is None else f"/clips/{public_id}.mp4",
        "scale": rater.scale.to_dict(),
        "fps": rater.fps,
        "project": rater.project_name,
        "instructions": rater.instructions,
        "rater": rater.name,
        "progress": progress,
    }


def _next(session: Session, rater: RaterContext) -> dict:
    shown = store.show_next(session, rater)  # gave back expired leases first, as progress does
    progress = store.queue_counts(session.connection(), rater)
    return _clip_payload(rater, None if shown is None else shown.public_id, progress)


def _undo(session: Session, rater: RaterContext) -> dict:
    item = store.undo_last(session, rater)
    payload = _clip_payload(
        rater, None if item is None else item.public_id, store.progress(session, rater)
    )
    return {**payload, "undone": item is not None}


def _references(session: Session, rater: RaterContext) -> dict:
    project = store.project_of(session, rater)
    scale = rater.scale
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


@routes.get("/api/next")
async def api_next(services: Services, creds: Creds) -> JSONResponse:
    return JSONResponse(await rater_call(services, creds, _next))


@routes.post("/api/ratings", status_code=201)
async def api_rate(body: RatingIn, services: Services, creds: Creds) -> JSONResponse:
    result = await rater_call(
        services, creds, store.submit, body.clip_id, body.rating, body.skip
    )
    # the unit has committed: only now is the rating acknowledged
    payload = {"rating_id": result.rating_id, "created": result.created}
    return JSONResponse(payload, status_code=201 if result.created else 200)


@routes.post("/api/undo")
async def api_undo(services: Services, creds: Creds) -> JSONResponse:
    return JSONResponse(await rater_call(services, creds, _undo))


@routes.get("/api/references")
async def api_references(services: Services, creds: Creds) -> JSONResponse:
    return JSONResponse(await rater_call(services, creds, _references, write=False))


def _clip_spec(session: Session, key: str, reference: bool) -> ClipSpec | None:
    found = store.clip_for(session, key, reference=reference)
    if found is None:
        return None
    segment, project = found
    arrays = (segment.obs, segment.acts, segment.states)
    # a rater's clip: the item's own variant (a repeat looks like any clip)
    return stored_clip(key, project.env_id, arrays, project, variant=not reference)


@routes.get("/clips/{name}")
async def clip(name: str, services: Services) -> FileResponse:
    if not name.endswith(".mp4") or not (match := _CLIP_KEY.match(name[:-4])):
        raise HTTPException(404, "no such clip")
    return await clip_response(services, _clip_spec, match.group(2), bool(match.group(1)))


def _stats(session: Session, project: str | None) -> dict:
    names = [project] if project else store.project_names(session)
    return {"projects": [project_stats(session, store.get_project(session, n)) for n in names]}


@routes.get("/api/operator/stats", dependencies=[Depends(require_operator)])
async def operator_stats(services: Services, project: str | None = None) -> JSONResponse:
    return JSONResponse(await services.read(_stats, project))


@routes.get("/healthz")
async def healthz() -> dict:
    return {"ok": True}


@routes.get("/", include_in_schema=False)
async def index() -> FileResponse:
    return FileResponse(STATIC_DIR / "index.html")


@routes.get("/operator", include_in_schema=False)
async def operator_page() -> FileResponse:
    return FileResponse(STATIC_DIR / "operator.html")


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
    process; the lifespan's end drops queued work, then closes the renderer and the database.
    """
    if not operator_token or len(operator_token) < 8:
        raise ValueError("operator_token must be at least 8 characters")
    config = config or ServerConfig()
    database = open_database(db_url)
    if database.upgrade.message:
        _log.warning(database.upgrade.message)
    try:
        reads, writes, renders = config.gates(database)
    except ValueError:
        database.close()
        raise
    renderer = renderer or ClipRenderer()
    services = AppServices(
        database=database,
        cache=ClipCache(clip_dir, renderer),
        operator_hash=store.hash_token(operator_token),
        reads=reads,
        writes=writes,
        renders=renders,
        tokens=KnownTokens(),
    )

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        services.close()
        renderer.close()
        database.close()

    app = FastAPI(title="ratingrl rating app", docs_url=None, redoc_url=None, lifespan=lifespan)
    app.state.services = services
    app.add_middleware(SecurityHeaders)
    app.add_middleware(BodyLimit, limit=config.max_body_bytes)
    install_error_handlers(app)
    app.include_router(routes)
    from ratingrl.app.operator_api import router as operator_api
    from ratingrl.app.pairs_api import router as pairs  # imported here: it builds on this module

    app.include_router(pairs)
    from ratingrl.app.runs_api import router as runs  # the runs people teach (operator page)

    app.include_router(runs)
    app.include_router(operator_api)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    return app


SERVE_ENV = {
    "db": "RATINGRL_SERVE_DB",
    "clip_dir": "RATINGRL_SERVE_CLIP_DIR",
    "operator_token": "RATINGRL_SERVE_OPERATOR_TOKEN",
    "config": "RATINGRL_SERVE_CONFIG",
}
"""Environment variables :func:`app_from_environment` reads (``ratingrl serve`` sets them)."""


def app_from_environment() -> FastAPI:
    """The app ``ratingrl serve`` describes in :data:`SERVE_ENV`: the factory each worker calls.

    Worker processes (``ratingrl serve --workers N``) import the app by name, so what it needs
    comes from the environment, not the command line: the operator token stays out of ``ps``.
    ``RATINGRL_SERVE_CONFIG`` holds :class:`ServerConfig` fields as JSON (optional).
    """
    missing = [v for k, v in SERVE_ENV.items() if k != "config" and not os.environ.get(v)]
    if missing:
        raise RuntimeError(f"app_from_environment needs {', '.join(missing)} (set by serve)")
    config = ServerConfig(**json.loads(os.environ.get(SERVE_ENV["config"]) or "{}"))
    return create_app(
        os.environ[SERVE_ENV["db"]],
        os.environ[SERVE_ENV["clip_dir"]],
        os.environ[SERVE_ENV["operator_token"]],
        config,
    )
