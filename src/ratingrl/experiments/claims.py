"""The papers' claims, measured on a results store: text, measurement with interval, verdict,
and the command that reproduces it.

Claims are data (``claims.toml`` beside this module, or a file of one's own in the same
format; its header documents the measures): adding one needs no code. A claim names the sweep
whose trials measure it, so one store can hold every sweep of the evidence.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ratingrl.experiments import measures, stats
from ratingrl.experiments.results import matches

__all__ = ["Claim", "load_claims", "measure_claim", "verdict", "MEASURES"]

MEASURES = ("recovery_iqm", "recovery_best_task", "improvement", "overhead", "fidelity_mean")
DEFAULT_FILE = Path(__file__).with_name("claims.toml")


@dataclass(frozen=True)
class Claim:
    """One claim and how it is measured (the fields of a ``[[claims]]`` table)."""

    id: str
    text: str
    source: str
    measure: str
    sweep: str
    method: str
    target: float
    command: str
    versus: str | None = None
    metric: str = "kendall_tau"
    envs: tuple[str, ...] = ()
    where: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.measure not in MEASURES:
            raise ValueError(f"claim {self.id}: measure {self.measure!r} not in {list(MEASURES)}")
        if self.measure == "improvement" and not self.versus:
            raise ValueError(f"claim {self.id}: measure 'improvement' needs `versus`")


def load_claims(path: str | Path | None = None) -> list[Claim]:
    """The claims of ``path`` (default: the papers' claims shipped with ratingrl)."""
    from ratingrl.experiments.sweep_spec import read_toml

    path = Path(path) if path is not None else DEFAULT_FILE
    tables = read_toml(path, "claims file").get("claims", [])
    claims = []
    for table in tables:
        try:
            table = {**table, "envs": tuple(table.get("envs", ()))}
            claims.append(Claim(**table))
        except TypeError as err:
            raise ValueError(f"{path}: claim {table.get('id', '?')}: {err}") from None
    return claims


def verdict(measured: stats.Interval | None, target: float) -> str:
    """``yes`` (the whole interval at or above the target), ``no`` (all below), ``open``."""
    if measured is None or not np.isfinite(measured.point):
        return "not measured"
    if measured.low >= target:
        return "yes"
    return "no" if measured.high < target else "open"


def measure_claim(claim: Claim, rows: Sequence[Mapping], reps: int, seed: int) -> dict:
    """The claim's measurement on ``rows`` (a store's index): interval, verdict, detail."""
    chosen = [
        r
        for r in rows
        if r.get("sweep") == claim.sweep
        and (not claim.envs or r.get("env_id") in claim.envs)
        and all(matches(r.get(k), v) for k, v in claim.where.items())
    ]
    measured, detail = _MEASURE[claim.measure](claim, chosen, reps, seed)
    return {
        "id": claim.id,
        "text": claim.text,
        "source": claim.source,
        "target": claim.target,
        "measured": None if measured is None else measured.to_dict(),
        "verdict": verdict(measured, claim.target),
        "detail": detail,
        "command": claim.command,
    }


# -- the measures ----------------------------------------------------------------------------
def _arm_scores(scores: dict, method: str) -> dict[str, list[float]]:
    """Every task's values of the arms of ``method`` ("*": every arm but the oracle)."""
    out: dict[str, list[float]] = {}
    for name, by_task in scores.items():
        base = name.split(" ")[0]
        if (method == "*" and base != measures.ORACLE) or base == method:
            for where, values in by_task.items():
                out.setdefault(where, []).extend(values)
    return out


def _recovery_iqm(claim: Claim, rows: list, reps: int, seed: int) -> tuple[Any, str]:
    scores = _arm_scores(measures.policy_scores(rows).recovery, claim.method)
    if not scores:
        return None, "no finished trial with its oracle"
    interval = stats.iqm_interval(scores, reps=reps, seed=seed)
    return interval, f"{interval.runs} runs on {', '.join(sorted(scores))}"


def _recovery_best_task(claim: Claim, rows: list, reps: int, seed: int) -> tuple[Any, str]:
    scores = _arm_scores(measures.policy_scores(rows).recovery, claim.method)
    if not scores:
        return None, "no finished trial with its oracle"
    per_task = {t: stats.mean_interval({t: v}, reps=reps, seed=seed) for t, v in scores.items()}
    best = max(per_task, key=lambda t: per_task[t].point)
    return per_task[best], f"best task {best} ({per_task[best].runs} seeds)"


def _improvement(claim: Claim, rows: list, reps: int, seed: int) -> tuple[Any, str]:
    if any(r.get("kind") == "fidelity" for r in rows):
        scores = measures.fidelity_scores(rows, claim.metric)
    else:
        scores = measures.policy_scores(rows).recovery
    ours, theirs = _arm_scores(scores, claim.method), _arm_scores(scores, str(claim.versus))
    if not ours or not theirs:
        return None, f"needs finished trials of both {claim.method} and {claim.versus}"
    interval = stats.probability_of_improvement(ours, theirs, reps=reps, seed=seed)
    if interval.tasks == 0:
        return None, "no task has both"
    return interval, f"P({claim.method} > {claim.versus}) over {interval.tasks} tasks"


def _overhead(claim: Claim, rows: list, reps: int, seed: int) -> tuple[Any, str]:
    scores = _arm_scores(measures.policy_scores(rows).overhead, claim.method)
    if not scores:
        return None, "no finished trial with its oracle"
    interval = stats.mean_interval(scores, reps=reps, seed=seed)
    return interval, f"{interval.runs} runs, whole run, reward updates counted"


def _fidelity_mean(claim: Claim, rows: list, reps: int, seed: int) -> tuple[Any, str]:
    scores = _arm_scores(measures.fidelity_scores(rows, claim.metric), claim.method)
    if not scores:
        return None, "no finished fidelity trial"
    interval = stats.mean_interval(scores, reps=reps, seed=seed)
    return interval, f"{claim.metric}, {interval.runs} runs in {interval.tasks} conditions"


_MEASURE = {
    "recovery_iqm": _recovery_iqm,
    "recovery_best_task": _recovery_best_task,
    "improvement": _improvement,
    "overhead": _overhead,
    "fidelity_mean": _fidelity_mean,
}
