"""Export the app's ratings as the Parquet feedback dataset that reward learning reads.

The file is exactly what :func:`ratingrl.feedback.io.save_rated` writes (so
:func:`~ratingrl.feedback.io.load_rated` and the reward trainer read it unchanged), plus extra
columns the loader ignores: ``rater_id``, ``clip_id`` (segment public id), ``rating_id``,
``shown_at``, ``answered_at`` (Unix seconds) and ``is_repeat``. ``label_id`` is the rating id
as a string, the id a training run's ``feedback.parquet`` gives the same rating. One row per
current rating of a queue item: a rating that was undone is left out; skips carry no label and
are left out.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from sqlalchemy import select
from sqlalchemy.orm import Session

from ratingrl.app import store
from ratingrl.app.db import Project, Rater, SegmentRow
from ratingrl.feedback.io import atomic_path, save_rated
from ratingrl.feedback.segments import RatedSegments

__all__ = ["export_ratings"]


def export_ratings(
    session: Session, project: Project, path: str | Path, include_repeats: bool = False
) -> int:
    """Write the project's ratings to ``path`` (atomically); returns the number of rows."""
    rows = store.effective_ratings(session, project, include_repeats=include_repeats)
    if not rows:
        raise store.AppError(f"project {project.name!r} has no ratings to export yet")
    segments = store.segments_by_id(session, [r.segment_id for r in rows])
    names = {r.id: r.name for r in session.scalars(select(Rater))}
    public = dict(
        session.execute(
            select(SegmentRow.id, SegmentRow.public_id).where(
                SegmentRow.id.in_({r.segment_id for r in rows})
            )
        ).all()
    )
    session.commit()
    data = RatedSegments(
        segments,
        np.array([r.value for r in rows]),
        store.project_scale(project),
        {"kind": "app", "project": project.name, "env_id": project.env_id},
        np.array([names[r.rater_id] for r in rows], dtype=object),
        np.array([str(r.id) for r in rows], dtype=object),  # as AppRatingSource names them
    )
    with atomic_path(path) as tmp:
        save_rated(data, tmp)
        table = pq.read_table(tmp)
        extra = {
            "rater_id": pa.array([r.rater_id for r in rows], pa.int64()),
            "clip_id": pa.array([public[r.segment_id] for r in rows], pa.string()),
            "rating_id": pa.array([r.id for r in rows], pa.int64()),
            "shown_at": pa.array([r.shown_at for r in rows], pa.float64()),
            "answered_at": pa.array([r.answered_at for r in rows], pa.float64()),
            "is_repeat": pa.array([bool(r.is_repeat) for r in rows], pa.bool_()),
        }
        for name, column in extra.items():
            table = table.append_column(name, column)
        pq.write_table(table, tmp, compression="zstd")
    return len(rows)
