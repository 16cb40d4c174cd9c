"""The rating server: a FastAPI app built by :func:`create_app`, with no module-level state.

JSON API (the page uses it; scripts may too). Raters send ``Authorization: Bearer <token>``:

* ``GET /api/next`` -> ``{"clip_id", "video_url", "scale": {"n", "names"}, "progress", ...}``;
  ``clip_id`` is null when the rater's queue is empty. Asking again before answering returns
  the same clip.
* ``POST /api/ratings`` ``{"clip_id": str, "rating": int}`` (or ``{"clip_id", "skip": true}``)
  -> 201 once the rating is committed. The same answer again -> 200 ``{"created": false}``; a
  different answer to an answered clip -> 409 (undo first). Rating outside the scale or wrong
  types -> 422, unknown clip (or another rater's) -> 404, bad token -> 401, body over
  ``max_body_bytes`` -> 413. A refused request changes nothing stored.
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
import re
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import FileResponse, JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt
from sqlalchemy import select
from sqlalchemy.orm import Session

from ratingrl.app import store
from ratingrl.app.db import (
    Project,
    QueueItem,
    Rater,
    SegmentRow,
    bytes_to_array,
    make_engine,
    make_sessionmaker,
)
from ratingrl.app.render import ClipCache, ClipRenderer, ClipSpec, RenderError
from ratingrl.app.stats import project_stats

__all__ = ["ServerConfig", "create_app"]

STATIC_DIR = Path(__file__).parent / "static"
_CLIP_KEY = re.compile(r"^(ref-)?([0-9a-f]{32})$")


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


def create_app(
    db_url: str,
    clip_dir: str | Path,
    operator_token: str,
    config: ServerConfig | None = None,
    renderer: ClipRenderer | None = None,
) -> FastAPI:
    """The rating server for the database at ``db_url``, caching clips in ``clip_dir``.

    ``operator_token`` guards the operator page and API. Everything the app needs is created
    here and kept on ``app.state``, so several apps (tests) can live in one process.
    """
    if not operator_token or len(operator_token) < 8:
        raise ValueError("operator_token must be at least 8 characters")
    config = config or ServerConfig()
    engine = make_engine(db_url)
    sessions = make_sessionmaker(engine)
    renderer = renderer or ClipRenderer()
    cache = ClipCache(clip_dir, renderer)
    operator_hash = store.hash_token(operator_token)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        renderer.close()
        engine.dispose()

    app = FastAPI(title="ratingrl rating app", docs_url=None, redoc_url=None, lifespan=lifespan)
    app.state.engine, app.state.sessions, app.state.cache = engine, sessions, cache
    app.add_middleware(_BodyLimit, limit=config.max_body_bytes)

    @app.middleware("http")
    async def _headers(request: Request, call_next):  # type: ignore[no-untyped-def]
        response = await call_next(request)
        for name, value in _SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        if request.url.path.startswith("/api/"):
            response.headers["Cache-Control"] = "no-store"
        return response

    bearer = HTTPBearer(auto_error=False)

    # SQLite takes one writer at a time; queueing writers on a lock here (FIFO-ish, no sleeps)
    # instead of in SQLite's busy handler (sleep and retry) cuts tail latency under load.
    write_lock = threading.Lock() if db_url.startswith("sqlite") else None

    def get_session() -> Iterator[Session]:
        if write_lock is None:
            with sessions() as session:
                yield session
            return
        with write_lock, sessions() as session:
            yield session

    def get_clip_session() -> Iterator[Session]:  # never held while a clip renders
        with sessions() as session:
            yield session

    SessionDep = Annotated[Session, Depends(get_session)]
    Creds = Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]

    def _unauthorized(what: str) -> HTTPException:
        return HTTPException(
            401, f"missing or unknown {what} token", headers={"WWW-Authenticate": "Bearer"}
        )

    def get_rater(session: SessionDep, creds: Creds) -> Rater:
        rater = store.rater_for_token(session, creds.credentials) if creds else None
        session.commit()
        if rater is None:
            raise _unauthorized("rater")
        return rater

    def require_operator(creds: Creds) -> None:
        given = store.hash_token(creds.credentials) if creds else ""
        if not hmac.compare_digest(given, operator_hash):
            raise _unauthorized("operator")

    RaterDep = Annotated[Rater, Depends(get_rater)]

    def _errors(fn):  # type: ignore[no-untyped-def]
        try:
            return fn()
        except store.NotFound as err:
            raise HTTPException(404, str(err)) from None
        except store.Conflict as err:
            raise HTTPException(409, str(err)) from None
        except store.AppError as err:
            raise HTTPException(422, str(err)) from None

    def _clip_payload(session: Session, rater: Rater, item: QueueItem | None) -> dict:
        project = session.get(Project, rater.project_id)
        scale = store.project_scale(project)
        body = {
            "clip_id": None if item is None else item.public_id,
            "video_url": None if item is None else f"/clips/{item.public_id}.mp4",
            "scale": scale.to_dict(),
            "fps": project.fps,
            "project": project.name,
            "instructions": project.instructions,
            "rater": rater.name,
        }
        body["progress"] = store.progress(session, rater)
        return body

    @app.get("/api/next")
    def api_next(session: SessionDep, rater: RaterDep) -> dict:
        item = _errors(lambda: store.next_item(session, rater))
        return _clip_payload(session, rater, item)

    @app.post("/api/ratings", status_code=201)
    def api_rate(body: RatingIn, session: SessionDep, rater: RaterDep):  # type: ignore[no-untyped-def]
        result = _errors(
            lambda: store.submit(session, rater, body.clip_id, body.rating, skip=body.skip)
        )
        payload = {"rating_id": result.rating_id, "created": result.created}
        return JSONResponse(payload, status_code=201 if result.created else 200)

    @app.post("/api/undo")
    def api_undo(session: SessionDep, rater: RaterDep) -> dict:
        item = _errors(lambda: store.undo_last(session, rater))
        payload = _clip_payload(session, rater, item)
        payload["undone"] = item is not None
        return payload

    @app.get("/api/references")
    def api_references(session: SessionDep, rater: RaterDep) -> dict:
        project = session.get(Project, rater.project_id)
        scale = store.project_scale(project)
        rows = session.scalars(
            select(SegmentRow)
            .where(SegmentRow.project_id == project.id, SegmentRow.reference_level.is_not(None))
            .order_by(SegmentRow.id)
        ).all()
        latest = {r.reference_level: r for r in rows}
        session.commit()
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

    @app.get("/clips/{name}")
    def clip(name: str, session: Annotated[Session, Depends(get_clip_session)]) -> FileResponse:
        if not name.endswith(".mp4") or not (match := _CLIP_KEY.match(name[:-4])):
            raise HTTPException(404, "no such clip")
        if match.group(1):
            segment = session.scalar(
                select(SegmentRow).where(
                    SegmentRow.public_id == match.group(2), SegmentRow.reference_level.is_not(None)
                )
            )
        else:
            item = session.scalar(select(QueueItem).where(QueueItem.public_id == match.group(2)))
            segment = None if item is None else session.get(SegmentRow, item.segment_id)
        if segment is None:
            raise HTTPException(404, "no such clip")
        project = session.get(Project, segment.project_id)
        session.commit()
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
            path = cache.get(spec)
        except RenderError as err:
            raise HTTPException(500, f"could not render clip: {err}") from None
        return FileResponse(
            path, media_type="video/mp4", headers={"Cache-Control": "private, max-age=86400"}
        )

    @app.get("/api/operator/stats", dependencies=[Depends(require_operator)])
    def operator_stats(session: SessionDep, project: str | None = None) -> dict:
        names = [project] if project else list(session.scalars(select(Project.name)).all())
        return {
            "projects": [
                _errors(lambda n=n: project_stats(session, store.get_project(session, n)))
                for n in names
            ]
        }

    @app.get("/healthz")
    def healthz() -> dict:
        return {"ok": True}

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html")

    @app.get("/operator", include_in_schema=False)
    def operator_page() -> FileResponse:
        return FileResponse(STATIC_DIR / "operator.html")

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    return app
