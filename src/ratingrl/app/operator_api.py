"""The operator's dashboard API: an ``APIRouter`` that :func:`ratingrl.app.server.create_app`
includes, behind the operator token like ``/api/operator/stats``.

* ``GET /api/operator/dashboard?project=NAME`` -> the numbers of
  :func:`ratingrl.app.dashboard.dashboard` for that project, plus ``"projects"`` (every
  project's name, for the page's choice). Without ``project`` the first project is shown; with
  no project at all the answer is ``{"projects": [], "project": null}``. Optional
  ``careless_below``, ``min_repeats`` and ``rate_window_s`` override
  :class:`~ratingrl.app.dashboard.DashboardSettings`' defaults.

Errors are one line with a status: a missing or wrong operator token 401, an unknown project
404, a setting out of range 422 (``{"detail": "..."}``), a server too busy to start the read
soon 503. The page polls this every few seconds: it runs in a read unit (never waits for, nor
holds, the write lock), and the statements it runs return rows bounded by the raters, the scale
and the timeline's points (see :mod:`ratingrl.app.dashboard`).
"""

from __future__ import annotations

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse
from sqlalchemy.orm import Session

from ratingrl.app import store
from ratingrl.app.dashboard import DashboardSettings, dashboard
from ratingrl.app.services import Services, require_operator

__all__ = ["router"]

router = APIRouter()
_DEFAULTS = DashboardSettings()


def _dashboard(session: Session, name: str | None, settings: DashboardSettings) -> dict:
    names = store.project_names(session)
    if name is None and not names:
        return {"projects": [], "project": None}
    project = store.get_project(session, name if name is not None else names[0])
    return {"projects": names, **dashboard(session, project, settings)}


@router.get("/api/operator/dashboard", dependencies=[Depends(require_operator)])
async def operator_dashboard(
    services: Services,
    project: str | None = None,
    careless_below: float = _DEFAULTS.careless_below,
    min_repeats: int = _DEFAULTS.min_repeats,
    rate_window_s: float = _DEFAULTS.rate_window_s,
) -> JSONResponse:
    settings = DashboardSettings(careless_below, min_repeats, rate_window_s)  # AppError: 422
    return JSONResponse(await services.read(_dashboard, project, settings))
