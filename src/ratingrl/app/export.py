"""Export the app's ratings as the Parquet feedback dataset that reward learning reads.

The file is exactly what :func:`ratingrl.feedback.io.save_rated` writes (so
:func:`~ratingrl.feedback.io.load_rated` and the reward trainer read it unchanged), plus extra
columns the loader ignores: ``rater_id``, ``clip_id`` (segment public id), ``rating_id``,
``shown_at``, ``answered_at`` (Unix seconds) and ``is_repeat``. ``label_id`` is the rating id
as a string, the id a training run's ``feedback.parquet`` gives the same rating. One row per
current rating of a queue item: a rating that was undone is left out; skips carry no label and
are left out.

People's comparisons export the same way as the library's preference dataset
(:func:`~ratingrl.feedback.io.save_preferences`, read by ``load_preferences``): ``first`` is the
clip shown on the left, ``label`` = P(right preferred) (0 left, 1 right, 0.5 equally good), one
row per current answer; extra columns ``rater``, ``rater_id``, ``answer_id``, ``label_id``
(the answer id as a string, as :class:`~ratingrl.app.pair_source.AppPreferenceSource` names it),
``pair_id`` (the rater's pair id), ``first_clip_id`` / ``second_clip_id``, ``choice``,
``shown_at`` and ``answered_at``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from sqlalchemy.orm import Session

from ratingrl.app import store
from ratingrl.app.db import Project
from ratingrl.feedback.io import atomic_path, save_preferences, save_rated
from ratingrl.feedback.segments import PreferencePairs, RatedSegments

__all__ = [
    "RatingsExport",
    "read_export",
    "write_export",
    "export_ratings",
    "PairsExport",
    "read_pairs_export",
    "write_pairs_export",
]


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)  # a folder too: its entry for the new name
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def _durable_path(path: str | Path) -> Iterator[Path]:
    """:func:`~ratingrl.feedback.io.atomic_path`, and on disk when the block returns.

    The file's bytes are synced before the rename and its folder after it: otherwise a power
    cut soon after an export can leave the new name pointing at an empty or partial file, or
    the old file back in place (``atomic_path`` alone guards against a crash of the process).
    """
    with atomic_path(path) as tmp:
        yield tmp
        _fsync(tmp)
    _fsync(Path(path).resolve().parent)


@dataclass(frozen=True)
class RatingsExport:
    """An export read from the database: the dataset and the extra per-rating columns."""

    data: RatedSegments
    columns: dict[str, pa.Array]


def read_export(
    session: Session, project: Project, include_repeats: bool = False
) -> RatingsExport:
    """Read the project's current ratings for export (reads only; refuses an empty project).

    Kept apart from :func:`write_export` so a caller can end its transaction before the file
    is written, instead of holding the database while Parquet is encoded.
    """
    rows = store.effective_ratings(session, project, include_repeats=include_repeats)
    if not rows:
        raise store.AppError(f"project {project.name!r} has no ratings to export yet")
    segments = store.segments_by_id(session, [r.segment_id for r in rows])
    names = store.rater_names(session, project)
    public = store.segment_public_ids(session, [r.segment_id for r in rows])
    data = RatedSegments(
        segments,
        np.array([r.value for r in rows]),
        store.project_scale(project),
        {"kind": "app", "project": project.name, "env_id": project.env_id},
        np.array([names[r.rater_id] for r in rows], dtype=object),
        np.array([str(r.id) for r in rows], dtype=object),  # as AppRatingSource names them
    )
    columns = {
        "rater_id": pa.array([r.rater_id for r in rows], pa.int64()),
        "clip_id": pa.array([public[r.segment_id] for r in rows], pa.string()),
        "rating_id": pa.array([r.id for r in rows], pa.int64()),
        "shown_at": pa.array([r.shown_at for r in rows], pa.float64()),
        "answered_at": pa.array([r.answered_at for r in rows], pa.float64()),
        "is_repeat": pa.array([bool(r.is_repeat) for r in rows], pa.bool_()),
    }
    return RatingsExport(data, columns)


def write_export(export: RatingsExport, path: str | Path) -> int:
    """Write ``export`` to ``path`` atomically and durably; returns the number of rows."""
    with _durable_path(path) as tmp:
        save_rated(export.data, tmp)
        table = pq.read_table(tmp)
        for name, column in export.columns.items():
            table = table.append_column(name, column)
        pq.write_table(table, tmp, compression="zstd")
    return len(export.data)


def export_ratings(
    session: Session, project: Project, path: str | Path, include_repeats: bool = False
) -> int:
    """Write the project's ratings to ``path`` (atomically); returns the number of rows.

    The caller's transaction stays open while the file is written; the CLI reads with
    :func:`read_export` in its unit of work and writes after the commit.
    """
    return write_export(read_export(session, project, include_repeats), path)


@dataclass(frozen=True)
class PairsExport:
    """People's comparisons read from the database: the dataset and the extra per-answer columns."""

    data: PreferencePairs
    columns: dict[str, pa.Array]


def read_pairs_export(session: Session, project: Project) -> PairsExport:
    """Read the project's current pair answers for export (reads only; refuses when none)."""
    rows = store.current_pair_answers(session, project)
    if not rows:
        raise store.AppError(f"project {project.name!r} has no pair answers to export yet")
    answered = store.answered_pairs(session, rows)
    names = store.rater_names(session, project)
    source = {
        "kind": "app",
        "project": project.name,
        "env_id": project.env_id,
        "first": "the clip shown on the left",
    }
    columns = {
        "rater_id": pa.array([r.rater_id for r in rows], pa.int64()),
        "answer_id": pa.array([r.id for r in rows], pa.int64()),
        "pair_id": pa.array([a.item.public_id for a in answered], pa.string()),
        "first_clip_id": pa.array([a.left.public_id for a in answered], pa.string()),
        "second_clip_id": pa.array([a.right.public_id for a in answered], pa.string()),
        "choice": pa.array([str(r.choice) for r in rows], pa.string()),
        "shown_at": pa.array([r.shown_at for r in rows], pa.float64()),
        "answered_at": pa.array([r.answered_at for r in rows], pa.float64()),
    }
    return PairsExport(store.preference_pairs(answered, source, names), columns)


def write_pairs_export(export: PairsExport, path: str | Path) -> int:
    """Write ``export`` to ``path`` atomically; returns the number of pairs.

    The dataset carries each pair's rater and answer id (``rater``, ``label_id``); the extra
    columns add the rest of what the database knows of the answer.
    """
    with _durable_path(path) as tmp:
        save_preferences(export.data, tmp)
        table = pq.read_table(tmp)
        for name, column in export.columns.items():
            table = table.append_column(name, column)
        pq.write_table(table, tmp, compression="zstd")
    return len(export.data)
