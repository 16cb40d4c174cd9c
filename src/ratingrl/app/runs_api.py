"""The runs people are teaching, for the operator page: an ``APIRouter`` that
:func:`ratingrl.app.server.create_app` includes (same gates, token check and error handlers).

A run started with ``ratingrl train --ratings-db`` reports to the database
(:mod:`ratingrl.app.run_reporter`); these endpoints read it back. Operator token required:

* ``GET /api/operator/runs`` (``?project=NAME`` optional) -> ``{"runs": [...]}``: every run,
  the latest started first (``run_id``, ``name``, ``project``, ``env_id``, ``algo``,
  ``method``, ``status``, ``env_steps``, ``total_steps``, ``eval_every``, ``started_at``,
  ``updated_at``).
* ``GET /api/operator/runs/{run_id}`` -> ``{"run", "rounds", "labels", "updates",
  "evaluations", "clip"}`` (see :func:`ratingrl.app.store.run_progress`); 404 if unknown.

And, like rating clips, without a header (a video tag cannot send one):

* ``GET /run-clips/<clip_id>.mp4`` -> the run's latest evaluation clip, rendered by the
  server's clip renderer. The random ``clip_id`` is the capability; it changes with every
  evaluation, and an older one answers 404.
"""

from __future__ import annotations

import re

from fastapi import APIRouter, Depends, HTTPException
from fastapi.responses import FileResponse, JSONResponse
from sqlalchemy.orm import Session

from ratingrl.app import store
from ratingrl.app.render import ClipSpec
from ratingrl.app.services import Services, clip_response, require_operator, stored_clip

__all__ = ["router"]

router = APIRouter()
_RUN_CLIP = re.compile(r"^([0-9a-f]{32})\.mp4$")


def _runs(session: Session, project: str | None) -> dict:
    found = None if project is None else store.get_project(session, project)
    return {"runs": store.run_summaries(session, found)}


def _progress(session: Session, run_id: str) -> dict | None:
    return store.run_progress(session, run_id)


@router.get("/api/operator/runs", dependencies=[Depends(require_operator)])
async def runs(services: Services, project: str | None = None) -> JSONResponse:
    return JSONResponse(await services.read(_runs, project))


@router.get("/api/operator/runs/{run_id}", dependencies=[Depends(require_operator)])
async def run_progress(run_id: str, services: Services) -> JSONResponse:
    progress = await services.read(_progress, run_id)
    if progress is None:
        raise HTTPException(404, "no such run")
    return JSONResponse(progress)


def _clip_spec(session: Session, clip_id: str) -> ClipSpec | None:
    found = store.run_clip(session, clip_id)
    if found is None:
        return None
    run, project = found
    assert run.clip_obs is not None and run.clip_acts is not None
    return stored_clip(clip_id, run.env_id, (run.clip_obs, run.clip_acts, run.clip_states), project)


@router.get("/run-clips/{name}")
async def run_clip(name: str, services: Services) -> FileResponse:
    match = _RUN_CLIP.match(name)
    if not match:
        raise HTTPException(404, "no such clip")
    return await clip_response(services, _clip_spec, match.group(1))
