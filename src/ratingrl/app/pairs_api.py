"""The comparison API and page: an ``APIRouter`` that :func:`ratingrl.app.server.create_app`
includes, on the server's own token check, bounded units of work (:mod:`ratingrl.app.services`:
a request the server cannot start soon is answered 503) and error handlers.

Raters send ``Authorization: Bearer <token>`` as for ratings:

* ``GET /api/asks`` -> ``{"asks": "ratings" | "pairs" | "both", "project", "rater"}``: which
  page the rater belongs on (no side effects).
* ``GET /api/pairs/next`` -> ``{"pair_id", "left_url", "right_url", "progress": {"answered",
  "queued"}, "fps", "project", "instructions", "rater", "asks"}``; ``pair_id`` is null when no
  pair is left. Asking again before answering returns the same pair. 409 when the project asks
  for ratings only.
* ``POST /api/pairs/answers`` ``{"pair_id": str, "choice": "left" | "right" | "equal"}`` (or
  ``{"pair_id", "skip": true}``) -> 201 ``{"answer_id", "created": true}`` once committed. The
  same answer again -> 200 ``{"created": false}``; a different answer -> 409 (undo first); a
  bad choice -> 422; another rater's or an unknown pair -> 404. A refused request stores
  nothing; refusals are ``{"detail": "<one line>"}``.
* ``POST /api/pairs/undo`` withdraws the rater's latest pair answer and returns that pair again
  (the ``next`` payload plus ``"undone": bool``).
* ``GET /pair-clips/<pair_id>-left.mp4`` (and ``-right``) -> the clip; as for rating clips the
  random per-rater id is the capability (video tags cannot send headers).

Page: ``/pairs`` (open ``/pairs#token=...``, or follow the rating page's link).
"""

from __future__ import annotations

import re
from pathlib import Path

from fastapi import APIRouter, HTTPException
from fastapi.responses import FileResponse, JSONResponse
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictStr
from sqlalchemy.orm import Session

from ratingrl.app import store
from ratingrl.app.db import PairItem
from ratingrl.app.render import ClipSpec
from ratingrl.app.services import Creds, Services, clip_response, rater_call, stored_clip
from ratingrl.app.store import RaterContext

__all__ = ["router"]

router = APIRouter()
STATIC_DIR = Path(__file__).parent / "static"
_PAIR_CLIP = re.compile(r"^([0-9a-f]{32})-(left|right)\.mp4$")


class PairAnswerIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    pair_id: str = Field(min_length=1, max_length=64)
    choice: StrictStr | None = Field(default=None, max_length=16)
    skip: StrictBool = False


def _pair_payload(session: Session, rater: RaterContext, item: PairItem | None) -> dict:
    url = None if item is None else f"/pair-clips/{item.public_id}"
    return {
        "pair_id": None if item is None else item.public_id,
        "left_url": None if url is None else f"{url}-left.mp4",
        "right_url": None if url is None else f"{url}-right.mp4",
        "fps": rater.fps,  # the project's fields came with the token, in one query
        "project": rater.project_name,
        "instructions": rater.instructions,
        "rater": rater.name,
        "asks": str(rater.asks),
        "progress": store.pair_progress(session, rater),
    }


def _asks(session: Session, rater: RaterContext) -> dict:
    return {"asks": str(rater.asks), "project": rater.project_name, "rater": rater.name}


def _next(session: Session, rater: RaterContext) -> dict:
    return _pair_payload(session, rater, store.next_pair(session, rater))


def _undo(session: Session, rater: RaterContext) -> dict:
    item = store.undo_last_pair(session, rater)
    return {**_pair_payload(session, rater, item), "undone": item is not None}


@router.get("/api/asks")
async def api_asks(services: Services, creds: Creds) -> JSONResponse:
    return JSONResponse(await rater_call(services, creds, _asks, write=False))


@router.get("/api/pairs/next")
async def api_next_pair(services: Services, creds: Creds) -> JSONResponse:
    return JSONResponse(await rater_call(services, creds, _next))


@router.post("/api/pairs/answers", status_code=201)
async def api_answer_pair(body: PairAnswerIn, services: Services, creds: Creds) -> JSONResponse:
    result = await rater_call(
        services, creds, store.answer_pair, body.pair_id, body.choice, body.skip
    )
    # the unit has committed: only now is the answer acknowledged
    payload = {"answer_id": result.answer_id, "created": result.created}
    return JSONResponse(payload, status_code=201 if result.created else 200)


@router.post("/api/pairs/undo")
async def api_undo_pair(services: Services, creds: Creds) -> JSONResponse:
    return JSONResponse(await rater_call(services, creds, _undo))


def _clip_spec(session: Session, item_public_id: str, side: str) -> ClipSpec | None:
    found = store.pair_clip_for(session, item_public_id, side)
    if found is None:
        return None
    segment, project = found
    arrays = (segment.obs, segment.acts, segment.states)
    # keyed by the segment: one file per clip, whichever pairs and raters show it
    return stored_clip(segment.public_id, project.env_id, arrays, project)


@router.get("/pair-clips/{name}")
async def pair_clip(name: str, services: Services) -> FileResponse:
    match = _PAIR_CLIP.match(name)
    if not match:
        raise HTTPException(404, "no such clip")
    return await clip_response(services, _clip_spec, match.group(1), match.group(2))


@router.get("/pairs", include_in_schema=False)
async def pairs_page() -> FileResponse:
    return FileResponse(STATIC_DIR / "pairs.html")
