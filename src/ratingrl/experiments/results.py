"""The results store of sweeps: one folder per trial and an index table across them.

    STORE/
      index.parquet              one row per trial (rebuilt from the folders at any time)
      sweeps/<name>.json         each sweep that wrote here, as it was specified
      trials/<sweep>/<trial>/    a trial's folder; its id is ``<sweep>/<trial>``
        trial.json               who the trial is: sweep, overrides, seed; its last error
        error.txt                the traceback of its last failure
        config.json              the configuration it runs
        summary.json             what it measured (written when it finishes)
        progress*.csv, ...       policy trials: the run folder of ratingrl.rl.run.Run itself

A policy trial's folder *is* its run folder, so ``ratingrl train --resume STORE/trials/<id>``
continues it by hand, and its learning curve is read back from its progress CSVs. The index is
derived from the folders (:meth:`ResultStore.rebuild`), never the other way round, so a store
copied, merged or half-written by a killed sweep is read correctly.

Status of a trial: ``finished`` (summary.json), ``failed`` (its last attempt raised; the error
is kept until an attempt succeeds), ``running`` (as the sweep that writes the index says),
``stopped`` (started, not finished: a sweep resumes it from its checkpoint), ``pending``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["ResultStore", "parse_where", "matches", "STATUSES", "POLICY_METRICS"]

STATUSES = ("finished", "failed", "running", "stopped", "pending")
POLICY_METRICS = (
    "true_return_final",
    "true_return_final_std",
    "true_return_final_ci_low",
    "true_return_final_ci_high",
    "true_return_best",
    "learned_return_final",
    "labels",
    "env_steps",
    "env_steps_per_s",
    "env_steps_per_cpu_s",
    "reward_update_s",
    "reward_update_cpu_s",
    "query_cpu_s",
    "wall_time_s",
)
FIDELITY_METRICS = (
    "ratings", "classes", "noise", "kendall_tau", "spearman", "label_accuracy", "epic",
)  # fmt: skip
_FIXED = ("trial_id", "sweep", "kind", "status", "env_id", "method", "seed")
_INTEGERS = {"seed", "labels", "env_steps", "ratings", "classes"}
_FLOATS = {*POLICY_METRICS, *FIDELITY_METRICS, "pair_accuracy"} - _INTEGERS


class ResultStore:
    """A store folder: its trials, their index, and queries over it (no pandas needed).

    ``rows(method="r4", status="finished")`` returns index rows as dicts;
    ``curve(trial_id)`` a policy trial's evaluations; ``table()`` the index as a pyarrow table
    for those who want ``.to_pandas()``.
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    @property
    def index_path(self) -> Path:
        """``index.parquet``: derived from the trial folders, rewritten as trials end."""
        return self.root / "index.parquet"

    def trial_dir(self, trial_id: str) -> Path:
        """A trial's folder (for a policy trial, its run folder: ``--resume`` works on it)."""
        return self.root / "trials" / trial_id

    def trial_ids(self) -> list[str]:
        """Every trial (``<sweep>/<trial>`` folders under ``trials/``), in name order."""
        base = self.root / "trials"
        return sorted(p.relative_to(base).as_posix() for p in base.glob("*/*") if p.is_dir())

    # -- one trial's files -------------------------------------------------------------------
    def meta(self, trial_id: str) -> dict:
        """The trial's ``trial.json`` (empty when a folder has none)."""
        return _read_json(self.trial_dir(trial_id) / "trial.json") or {}

    def write_meta(self, trial_id: str, meta: Mapping[str, Any]) -> None:
        """Write ``trial.json`` atomically (folder created)."""
        _write_json(self.trial_dir(trial_id) / "trial.json", meta)

    def record_failure(self, trial_id: str, meta: Mapping[str, Any], error: str, trace: str):
        """Keep a failure where it is looked for: ``trial.json``, ``error.txt``, the index."""
        from ratingrl.feedback.io import atomic_write_bytes

        self.write_meta(trial_id, {**meta, "error": error})
        atomic_write_bytes(self.trial_dir(trial_id) / "error.txt", (trace or error).encode())

    def summary(self, trial_id: str) -> dict | None:
        """What a finished trial measured (None until it finishes)."""
        return _read_json(self.trial_dir(trial_id) / "summary.json")

    def config(self, trial_id: str) -> dict | None:
        """The configuration a started trial runs (None before it starts)."""
        return _read_json(self.trial_dir(trial_id) / "config.json")

    def status(self, trial_id: str, running: Iterable[str] = ()) -> str:
        """``finished``, ``failed``, ``running``, ``stopped`` or ``pending`` (module docstring)."""
        folder = self.trial_dir(trial_id)
        if (folder / "summary.json").exists():
            return "finished"
        if trial_id in set(running):
            return "running"
        if self.meta(trial_id).get("error"):
            return "failed"
        return "stopped" if (folder / "config.json").exists() else "pending"

    def curve(self, trial_id: str) -> dict[str, np.ndarray]:
        """A policy trial's evaluations: ``env_steps``, ``true_return``, ``learned_return``."""
        from ratingrl.rl.evaluation import eval_curve

        return eval_curve(self.trial_dir(trial_id))

    # -- the index ---------------------------------------------------------------------------
    def rebuild(self, running: Iterable[str] = ()) -> list[dict]:
        """Read every trial folder, write ``index.parquet``, return its rows."""
        running = set(running)
        rows = [self._row(trial_id, running) for trial_id in self.trial_ids()]
        _write_index(rows, self.index_path)
        return rows

    def rows(self, where: Mapping[str, Any] | None = None, **equals: Any) -> list[dict]:
        """Index rows (dicts) whose columns match ``where`` and ``equals``, e.g.
        ``rows({"env_id": "dmc/walker-walk"}, method="r4")``; values compare as
        :func:`matches` does. The index is rebuilt first if it is missing."""
        if self.index_path.exists():
            import pyarrow.parquet as pq

            rows = pq.read_table(self.index_path).to_pylist()
        elif self.root.is_dir():
            rows = self.rebuild()
        else:
            raise FileNotFoundError(f"{self.root} is not a results store (no such folder)")
        wanted = {**(where or {}), **equals}
        return [row for row in rows if all(matches(row.get(k), v) for k, v in wanted.items())]

    def table(self):
        """The index as a ``pyarrow.Table`` (``.to_pandas()`` for those who have pandas)."""
        import pyarrow.parquet as pq

        self.rows()  # rebuilt first if missing
        return pq.read_table(self.index_path)

    def _row(self, trial_id: str, running: set[str]) -> dict:
        meta, summary = self.meta(trial_id), self.summary(trial_id) or {}
        config = self.config(trial_id) or {}
        kind = meta.get("kind") or ("fidelity" if "job" in config else "policy")
        row: dict[str, Any] = {
            "trial_id": trial_id,
            "sweep": meta.get("sweep"),
            "kind": kind,
            "status": self.status(trial_id, running),
            "env_id": meta.get("env_id"),
            "method": meta.get("method"),
            "seed": meta.get("seed"),
        }
        row.update(_policy_metrics(summary) if kind == "policy" else _fidelity_metrics(summary))
        error = meta.get("error") if row["status"] != "finished" else None
        row["error"] = error.strip().splitlines()[-1][:300] if error else None
        overrides = meta.get("overrides") or {}
        row["overrides"] = json.dumps(overrides, sort_keys=True)
        for key, value in overrides.items():
            if row.get(key) is None:
                row[key] = value
        return row


# -- filters ---------------------------------------------------------------------------------
def parse_where(clauses: Sequence[str]) -> dict[str, str]:
    """``["method=r4", "env_id=dmc/walker-walk"]`` -> a dict; a clear error for a bad clause."""
    out = {}
    for clause in clauses:
        key, sep, value = clause.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--where takes COLUMN=VALUE, got {clause!r}")
        out[key.strip()] = value.strip()
    return out


def matches(value: Any, wanted: Any) -> bool:
    """Whether an index value equals what a filter asks for, written as text or typed:
    ``100`` matches ``"100"``, ``1e-06`` matches ``"1e-6"``, ``[64, 64]`` matches ``"64,64"``,
    a missing value matches ``"none"``."""
    if value is None or wanted is None:
        return value is None and (wanted is None or str(wanted).lower() in ("", "none", "null"))
    if isinstance(value, list | tuple):
        value = ",".join(str(v) for v in value)
    if isinstance(wanted, list | tuple):
        wanted = ",".join(str(v) for v in wanted)
    if str(value) == str(wanted).replace(" ", "") or str(value) == str(wanted):
        return True
    try:
        return math.isclose(float(value), float(wanted), rel_tol=1e-9, abs_tol=1e-12)
    except (TypeError, ValueError):
        return False


# -- reading and writing ---------------------------------------------------------------------
def _policy_metrics(summary: dict) -> dict:
    final = summary.get("true_return_final") or {}
    best = summary.get("true_return_best") or {}
    learned = summary.get("learned_return_final") or {}
    out = {
        "true_return_final": final.get("mean"),
        "true_return_final_std": final.get("std"),
        "true_return_final_ci_low": (final.get("ci95") or [None, None])[0],
        "true_return_final_ci_high": (final.get("ci95") or [None, None])[1],
        "true_return_best": best.get("mean"),
        "learned_return_final": learned.get("mean"),
        "labels": summary.get("labels_used"),
    }
    out.update({k: summary.get(k) for k in POLICY_METRICS if k not in out})
    return out


def _fidelity_metrics(summary: dict) -> dict:
    out = {k: summary.get(k) for k in FIDELITY_METRICS}
    out["pair_accuracy"] = summary.get("pair_accuracy")
    out["wall_time_s"] = summary.get("wall_time_s")
    return out


def _write_index(rows: list[dict], path: Path) -> None:
    """Typed columns where the values allow it (a column of ints stays ints), else text."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from ratingrl.feedback.io import atomic_path

    names: list[str] = list(_FIXED)
    for row in rows:
        names += [k for k in row if k not in names]
    columns = {}
    for name in names:
        values = [row.get(name) for row in rows]
        columns[name] = _column(name, values)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        pq.write_table(pa.table(columns) if rows else pa.table({n: [] for n in _FIXED}), tmp)


def _column(name: str, values: list):
    import pyarrow as pa

    if name in _INTEGERS:
        return pa.array(values, pa.int64())
    if name in _FLOATS:
        return pa.array([None if v is None else float(v) for v in values], pa.float64())
    if any(isinstance(v, dict) for v in values):
        values = [None if v is None else json.dumps(v, sort_keys=True) for v in values]
    try:
        column = pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return pa.array([None if v is None else json.dumps(v) for v in values], pa.string())
    return pa.array(values, pa.string()) if pa.types.is_null(column.type) else column


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(f"cannot read {path}: {err}") from None


def _write_json(path: Path, data: Mapping[str, Any]) -> None:
    from ratingrl.feedback.io import atomic_write_bytes

    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, json.dumps(data, indent=2).encode())
