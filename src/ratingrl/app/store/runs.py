"""Training runs reporting to the app, and what the operator page reads back about them.

A run (``ratingrl train --ratings-db``) registers itself with :func:`start_run`, then adds an
event per report (:func:`add_run_event`: ``labels``, ``update``, ``evaluation``) and replaces
its latest evaluation clip (:func:`set_run_clip`). :func:`run_summaries` lists a project's runs
newest first; :func:`run_progress` turns one run's events into the series the page draws.

Labels per round: a ``labels`` event carries the labels asked for in each round so far and the
labels stored now. A round's *collected* count is the labels that arrived while it was the
latest round (a label withdrawn in the app meanwhile subtracts one), so the bars add up to the
labels the run holds.

A resumed run keeps its row (same ``run_key``); its events from beyond the checkpoint it
resumed from are deleted, since the resume undid them.
"""

from __future__ import annotations

import json
import math
import time
from typing import Any

import numpy as np
from sqlalchemy import delete, select
from sqlalchemy.orm import Session, defer

from ratingrl.app.db import array_to_bytes, bytes_to_array
from ratingrl.app.errors import AppError, NotFound
from ratingrl.app.models import Project, RunEventRow, RunRow
from ratingrl.app.store.projects import new_public_id

__all__ = [
    "RUN_EVENT_KINDS",
    "RUN_STATUSES",
    "start_run",
    "add_run_event",
    "set_run_clip",
    "finish_run",
    "run_summaries",
    "run_progress",
    "run_clip",
]

RUN_EVENT_KINDS = ("labels", "update", "evaluation")
RUN_STATUSES = ("running", "finished", "stopped")


def _finite(value: Any) -> Any:
    """``value`` with every non-finite float as None (JSON has no NaN), nested too."""
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value


def start_run(
    session: Session, project: Project, run_key: str, name: str, config: dict, env_steps: int
) -> RunRow:
    """The run named ``run_key`` in ``project``, registered now or continued (a resume).

    ``config`` is the run's configuration (``env_id`` is read from it); ``env_steps`` is where
    the run starts: a resumed run's events past it are deleted (the resume undid them).
    """
    if "env_id" not in config:
        raise AppError(f"a run's configuration needs an env_id; got keys {sorted(config)}")
    run = session.scalars(
        select(RunRow).where(RunRow.project_id == project.id, RunRow.run_key == run_key)
    ).one_or_none()
    now = time.time()
    if run is None:
        run = RunRow(
            public_id=new_public_id(),
            project_id=project.id,
            run_key=run_key,
            name=name,
            started_at=now,
        )
        session.add(run)
    else:
        undone = (RunEventRow.run_id == run.id, RunEventRow.env_steps > env_steps)
        session.execute(delete(RunEventRow).where(*undone))
    run.env_id, run.config = str(config["env_id"]), json.dumps(_finite(config))
    run.status, run.env_steps, run.updated_at = "running", int(env_steps), now
    session.flush()
    return run


def _run(session: Session, run_id: int) -> RunRow:
    run = session.get(RunRow, run_id)
    if run is None:
        raise NotFound(f"no run with id {run_id}")
    return run


def add_run_event(session: Session, run_id: int, kind: str, env_steps: int, data: dict) -> None:
    """Record one report of the run ``run_id`` (its row id) at ``env_steps``."""
    if kind not in RUN_EVENT_KINDS:
        raise AppError(f"run event kind must be one of {RUN_EVENT_KINDS}, got {kind!r}")
    run = _run(session, run_id)
    session.add(
        RunEventRow(
            run_id=run.id, kind=kind, env_steps=int(env_steps), data=json.dumps(_finite(data))
        )
    )
    run.env_steps, run.updated_at = max(run.env_steps, int(env_steps)), time.time()


def set_run_clip(
    session: Session,
    run_id: int,
    env_steps: int,
    obs: np.ndarray,
    acts: np.ndarray,
    states: np.ndarray | None,
) -> str:
    """Make these arrays the run's latest evaluation clip; returns its new random id."""
    if len(obs) != len(acts) or len(obs) == 0:
        raise AppError(f"a clip's obs and acts need the same length > 0: {len(obs)}, {len(acts)}")
    if states is not None and len(states) != len(obs):
        raise AppError(f"a clip's states ({len(states)}) must match its steps ({len(obs)})")
    run = _run(session, run_id)
    run.clip_id, run.clip_env_steps = new_public_id(), int(env_steps)
    run.clip_obs, run.clip_acts = array_to_bytes(np.asarray(obs)), array_to_bytes(np.asarray(acts))
    run.clip_states = None if states is None else array_to_bytes(np.asarray(states))
    run.updated_at = time.time()
    return run.clip_id


def finish_run(session: Session, run_id: int, status: str) -> None:
    """The run ended: ``finished``, or ``stopped`` by an error."""
    if status not in RUN_STATUSES:
        raise AppError(f"run status must be one of {RUN_STATUSES}, got {status!r}")
    run = _run(session, run_id)
    run.status, run.updated_at = status, time.time()


def _summary(run: RunRow, project_name: str) -> dict:
    config = json.loads(run.config)
    return {
        "run_id": run.public_id,
        "name": run.name,
        "project": project_name,
        "env_id": run.env_id,
        "algo": config.get("algo"),
        "method": config.get("method"),
        "status": run.status,
        "env_steps": run.env_steps,
        "total_steps": config.get("total_steps"),
        "eval_every": config.get("eval_every"),
        "started_at": run.started_at,
        "updated_at": run.updated_at,
    }


def run_summaries(session: Session, project: Project | None = None) -> list[dict]:
    """Every run (of ``project``, else of all projects), the latest started first."""
    query = (
        select(RunRow, Project.name)
        .join(Project, Project.id == RunRow.project_id)
        .options(defer(RunRow.clip_obs), defer(RunRow.clip_acts), defer(RunRow.clip_states))
    )
    if project is not None:
        query = query.where(RunRow.project_id == project.id)
    query = query.order_by(RunRow.started_at.desc(), RunRow.id.desc())
    return [_summary(run, name) for run, name in session.execute(query)]


def run_progress(session: Session, public_id: str) -> dict | None:
    """A run's summary and series: ``rounds``, ``labels``, ``updates``, ``evaluations`` (each
    ordered by report; an evaluation at the step of the one before replaces it, as in the run's
    own history) and its latest ``clip``; None for an unknown run id."""
    found = session.execute(
        select(RunRow, Project.name)
        .join(Project, Project.id == RunRow.project_id)
        .where(RunRow.public_id == public_id)
    ).one_or_none()
    if found is None:
        return None
    run, project_name = found
    events = session.execute(
        select(RunEventRow.kind, RunEventRow.env_steps, RunEventRow.data)
        .where(RunEventRow.run_id == run.id)
        .order_by(RunEventRow.id)
    ).all()
    series: dict[str, list[dict]] = {kind: [] for kind in RUN_EVENT_KINDS}
    for kind, env_steps, data in events:
        rows = series[kind]
        if kind == "evaluation" and rows and rows[-1]["env_steps"] == env_steps:
            rows.pop()  # the run's final evaluation replaces a periodic one at its step
        rows.append({"env_steps": env_steps, **json.loads(data)})
    return {
        "run": _summary(run, project_name),
        "rounds": _rounds(series["labels"]),
        "labels": series["labels"],
        "updates": series["update"],
        "evaluations": series["evaluation"],
        "clip": _clip_info(run),
    }


def _rounds(labels: list[dict]) -> list[dict]:
    """Per round: when it was asked, labels requested, labels that arrived while it was the
    latest round (see the module doc)."""
    if not labels:
        return []
    requested = labels[-1]["requested"]
    asked_at: list[int | None] = [None] * len(requested)
    before = [0] * (len(requested) + 1)  # labels stored when round k was asked (k = 1..)
    last_rounds, last_labels = 0, 0
    for event in labels:
        rounds = len(event["requested"])
        for k in range(last_rounds, min(rounds, len(requested))):
            asked_at[k] = event["env_steps"]
            before[k] = last_labels
        last_rounds, last_labels = max(last_rounds, rounds), event["labels"]
    before[len(requested)] = last_labels
    return [
        {
            "round": k + 1,
            "env_steps": asked_at[k],
            "requested": requested[k],
            "collected": before[k + 1] - before[k],
        }
        for k in range(len(requested))
    ]


def _clip_info(run: RunRow) -> dict | None:
    if run.clip_id is None or run.clip_obs is None:
        return None
    return {
        "url": f"/run-clips/{run.clip_id}.mp4",
        "env_steps": run.clip_env_steps,
        "frames": int(bytes_to_array(run.clip_obs).shape[0]),
        "states": run.clip_states is not None,
    }


def run_clip(session: Session, clip_id: str) -> tuple[RunRow, Project] | None:
    """The run whose latest clip is ``clip_id`` (an older clip's id finds nothing), and its
    project (the clip is rendered at the project's size and speed)."""
    found = session.execute(
        select(RunRow, Project)
        .join(Project, Project.id == RunRow.project_id)
        .where(RunRow.clip_id == clip_id)
    ).one_or_none()
    return None if found is None else (found[0], found[1])
