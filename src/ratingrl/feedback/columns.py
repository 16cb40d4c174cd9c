"""Validated array columns shared by the data classes of :mod:`ratingrl.feedback.segments`.

Every array is checked where it is made, with the field and the offending value in the message.
The optional per-label columns (``rater``, ``label_id``) behave the same for ratings and for
preference pairs: kept through ``subset`` and ``concat``, and ``label_id`` names a label its
source may later withdraw (a person's undo in the rating app).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

import numpy as np

from ratingrl.feedback.errors import FeedbackError

__all__ = ["as_float_array", "label_ids", "rater_column", "concat_optional", "rows_without_ids"]


def as_float_array(name: str, value: object, ndim: int, dtype: type = np.float32) -> np.ndarray:
    """``value`` as a finite float array of ``ndim`` dimensions, or a clear error."""
    array = np.asarray(value, dtype=dtype)
    if array.ndim != ndim:
        raise FeedbackError(f"{name} must have {ndim} dimensions, got shape {array.shape}")
    bad = ~np.isfinite(array)
    if bad.any():
        index = tuple(int(i) for i in np.argwhere(bad)[0])
        raise FeedbackError(
            f"{name} holds a non-finite value {float(array[index])} at index {index}"
        )
    return array


def label_ids(value: object, n: int) -> np.ndarray:
    """``label_id`` as strings (None: no id). Integers (database row ids) become decimal strings,
    so ids compare equal whether made in memory or read back from Parquet's string column."""
    ids = np.asarray(value, dtype=object)
    if ids.shape != (n,):
        raise FeedbackError(f"label_id has shape {ids.shape}, expected ({n},)")
    out = np.empty(n, dtype=object)
    for i, item in enumerate(ids):
        if isinstance(item, (int, np.integer)) and not isinstance(item, (bool, np.bool_)):
            item = str(int(item))
        if item is not None and (not isinstance(item, str) or not item):
            raise FeedbackError(
                f"label_id[{i}] = {item!r} must be a non-empty string, an integer or None"
            )
        out[i] = item
    return out


def rater_column(value: object, n: int) -> np.ndarray:
    """``rater`` as an object array of length ``n`` (one name, or None, per label)."""
    rater = np.asarray(value, dtype=object)
    if rater.shape != (n,):
        raise FeedbackError(f"rater has shape {rater.shape}, expected ({n},)")
    return rater


def concat_optional(parts: Sequence[object], name: str) -> np.ndarray | None:
    """Column ``name`` of ``parts`` joined; None rows where a part lacks it; None if all do."""
    columns = [getattr(p, name) for p in parts]
    if all(c is None for c in columns):
        return None
    blank = [np.full(len(p), None, dtype=object) for p in parts]
    return np.concatenate([b if c is None else c for b, c in zip(blank, columns, strict=True)])


def rows_without_ids(label_id: np.ndarray | None, ids: Collection[str]) -> np.ndarray | None:
    """Indices of the rows whose ``label_id`` is not in ``ids`` (rows without an id are kept:
    nothing can name them); None when nothing is removed."""
    if label_id is None or not ids:
        return None
    keep = np.flatnonzero([label is None or label not in ids for label in label_id])
    return None if len(keep) == len(label_id) else keep
