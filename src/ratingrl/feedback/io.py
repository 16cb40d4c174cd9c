"""Parquet storage for segments, rated segments and preference pairs.

One row per segment (or pair). Arrays are flattened into fixed-size list columns, which PyArrow
reads back without a Python loop. A JSON blob in the schema metadata under ``ratingrl`` holds the
schema version, the kind of dataset, the shapes and the configuration that produced the labels,
so a file says how it was made and a foreign Parquet file is recognised as such.

Writes are atomic (temporary file in the same folder, then ``os.replace``): a crash mid-write or
invalid data never destroys a file that was already there.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ratingrl.feedback.segments import (
    FeedbackError,
    PreferencePairs,
    RatedSegments,
    RatingScale,
    SegmentSet,
)

__all__ = [
    "SCHEMA_VERSION",
    "DatasetError",
    "save_segments",
    "load_segments",
    "save_rated",
    "load_rated",
    "save_preferences",
    "load_preferences",
    "read_metadata",
    "atomic_write_bytes",
    "atomic_path",
]

SCHEMA_VERSION = 1
_META_KEY = b"ratingrl"


class DatasetError(FeedbackError):
    """A file that is not a (readable, current) ratingrl dataset."""


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path`` in one rename.

    Readers see the old file or the new one, never half of either; on an error the temporary
    file is removed and ``path`` is untouched. The new file gets the usual permissions
    (0666 minus the umask), not ``mkstemp``'s private 0600.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and a rename (never half a file)."""
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def _atomic_write_table(table: pa.Table, path: str | Path) -> None:
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, compression="zstd")


def _fixed_list(array: np.ndarray, dtype: type = np.float32) -> pa.FixedSizeListArray:
    # the row size from the shape, not -1: a set emptied by retractions still has one
    size = int(np.prod(array.shape[1:], dtype=np.int64))
    flat = np.ascontiguousarray(array, dtype=dtype).reshape(len(array), size)
    return pa.FixedSizeListArray.from_arrays(pa.array(flat.ravel()), flat.shape[1])


def _segment_columns(segments: SegmentSet, prefix: str = "") -> dict[str, pa.Array]:
    columns = {
        f"{prefix}episode_id": pa.array(segments.episode_id),
        f"{prefix}start": pa.array(segments.start),
        f"{prefix}obs": _fixed_list(segments.obs),
        f"{prefix}acts": _fixed_list(segments.acts),
    }
    if segments.true_rewards is not None:
        columns[f"{prefix}true_rewards"] = _fixed_list(segments.true_rewards)
    if segments.states is not None:  # float64: replayed poses must match the recorded ones
        columns[f"{prefix}states"] = _fixed_list(segments.states, np.float64)
    return columns


def _shape_meta(segments: SegmentSet, *more: SegmentSet) -> dict:
    """Shapes from ``segments``; ``state_dim`` from whichever of them carries states (if any)."""
    meta = {
        "horizon": segments.horizon,
        "obs_dim": segments.obs_dim,
        "act_dim": segments.act_dim,
        "info": segments.info,
    }
    state_dim = next((s.state_dim for s in (segments, *more) if s.states is not None), None)
    if state_dim is not None:
        meta["state_dim"] = state_dim
    return meta


def _write(columns: dict[str, pa.Array], meta: dict, path: str | Path) -> None:
    meta = {"schema_version": SCHEMA_VERSION, **meta}
    table = pa.table(columns).replace_schema_metadata({_META_KEY: json.dumps(meta).encode()})
    _atomic_write_table(table, path)


def read_metadata(path: str | Path) -> dict:
    """The ``ratingrl`` metadata of a dataset file, or a clear error for anything else."""
    path = Path(path)
    if not path.exists():
        raise DatasetError(f"dataset file {str(path)!r} does not exist")
    try:
        schema = pq.read_schema(path)
    except (pa.ArrowException, OSError) as err:
        raise DatasetError(f"{str(path)!r} is not a readable Parquet file: {err}") from err
    raw = (schema.metadata or {}).get(_META_KEY)
    if raw is None:
        raise DatasetError(
            f"{str(path)!r} is a Parquet file but not a ratingrl dataset "
            "(no 'ratingrl' schema metadata)"
        )
    meta = json.loads(raw)
    version = meta.get("schema_version")
    if version != SCHEMA_VERSION:
        raise DatasetError(
            f"{str(path)!r} has schema_version {version!r}; this ratingrl reads {SCHEMA_VERSION}"
        )
    return meta


def _read(path: str | Path, kind: str) -> tuple[pa.Table, dict]:
    meta = read_metadata(path)
    if meta.get("kind") != kind:
        raise DatasetError(f"{str(path)!r} holds a {meta.get('kind')!r} dataset, expected {kind!r}")
    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError) as err:
        raise DatasetError(f"{str(path)!r} is corrupt: {err}") from err
    return table, meta


def _column_array(table: pa.Table, name: str, shape: tuple[int, ...]) -> np.ndarray:
    column = table.column(name).combine_chunks()
    # Arrow memory is read-only; torch (and users) expect arrays they can write to.
    flat = column.flatten().to_numpy(zero_copy_only=False)
    return np.array(flat, copy=True).reshape(len(table), *shape)


def _column(table: pa.Table, name: str) -> np.ndarray:
    """A scalar column as a writable numpy array."""
    return np.array(table.column(name).to_numpy(), copy=True)


def _segments_from(table: pa.Table, meta: dict, prefix: str = "") -> SegmentSet:
    h, obs_dim, act_dim = meta["horizon"], meta["obs_dim"], meta["act_dim"]
    try:
        rewards_name = f"{prefix}true_rewards"
        rewards = (
            _column_array(table, rewards_name, (h,)) if rewards_name in table.column_names else None
        )
        states_name = f"{prefix}states"  # optional: files written before states still load
        states = (
            _column_array(table, states_name, (h, meta["state_dim"]))
            if states_name in table.column_names
            else None
        )
        return SegmentSet(
            _column_array(table, f"{prefix}obs", (h, obs_dim)),
            _column_array(table, f"{prefix}acts", (h, act_dim)),
            rewards,
            _column(table, f"{prefix}episode_id"),
            _column(table, f"{prefix}start"),
            dict(meta.get("info", {})),
            states,
        )
    except (KeyError, ValueError, pa.ArrowException) as err:
        if isinstance(err, FeedbackError):
            raise
        raise DatasetError(f"dataset columns do not match its metadata: {err}") from err


# -- public API ------------------------------------------------------------------------------
def save_segments(segments: SegmentSet, path: str | Path, **metadata: object) -> None:
    """Save unlabelled segments (a pool); ``metadata`` (JSON-able) travels with them."""
    _write(
        _segment_columns(segments),
        {"kind": "segments", **_shape_meta(segments), "extra": metadata},
        path,
    )


def load_segments(path: str | Path) -> tuple[SegmentSet, dict]:
    """Load a pool saved by :func:`save_segments`: the segments and their metadata."""
    table, meta = _read(path, "segments")
    return _segments_from(table, meta), meta.get("extra", {})


def save_rated(data: RatedSegments, path: str | Path) -> None:
    """Save rated segments with their scale and the full configuration of their source."""
    columns = _segment_columns(data.segments)
    columns["rating"] = pa.array(data.ratings)
    columns.update(_label_columns(data))
    meta = {
        "kind": "rated_segments",
        **_shape_meta(data.segments),
        "scale": data.scale.to_dict(),
        "source": data.source,
    }
    _write(columns, meta, path)


def load_rated(path: str | Path) -> RatedSegments:
    """Load rated segments; ratings are re-validated against the stored scale.

    ``rater`` and ``label_id`` are optional columns: files written without them (label ids came
    later) load with None there.
    """
    table, meta = _read(path, "rated_segments")
    rater, label_id = (_optional_strings(table, name) for name in ("rater", "label_id"))
    return RatedSegments(
        _segments_from(table, meta),
        _column(table, "rating"),
        RatingScale.from_dict(meta["scale"]),
        meta.get("source", {}),
        rater,
        label_id,
    )


def _label_columns(data: RatedSegments | PreferencePairs) -> dict[str, pa.Array]:
    """The optional per-label columns (who answered, the label's id at its source)."""
    columns = {}
    if data.rater is not None:
        columns["rater"] = pa.array([None if r is None else str(r) for r in data.rater])
    if data.label_id is not None:
        columns["label_id"] = pa.array(list(data.label_id), pa.string())
    return columns


def _optional_strings(table: pa.Table, name: str) -> np.ndarray | None:
    """A column as an object array (None for a missing value), or None if it is absent;
    :class:`RatedSegments` validates the values."""
    if name not in table.column_names:
        return None
    values = np.empty(len(table), dtype=object)
    values[:] = table.column(name).to_pylist()
    return values


def save_preferences(data: PreferencePairs, path: str | Path) -> None:
    """Save preference pairs (``label`` = probability the second segment is preferred), with
    their optional ``rater`` and ``label_id`` columns."""
    columns = {**_segment_columns(data.first, "first_"), **_segment_columns(data.second, "second_")}
    columns["label"] = pa.array(data.labels)
    columns.update(_label_columns(data))
    meta = {"kind": "preferences", **_shape_meta(data.first, data.second), "source": data.source}
    _write(columns, meta, path)


def load_preferences(path: str | Path) -> PreferencePairs:
    """Load preference pairs saved by :func:`save_preferences`."""
    table, meta = _read(path, "preferences")
    rater, label_id = (_optional_strings(table, name) for name in ("rater", "label_id"))
    return PreferencePairs(
        _segments_from(table, meta, "first_"),
        _segments_from(table, meta, "second_"),
        _column(table, "label"),
        meta.get("source", {}),
        rater,
        label_id,
    )
