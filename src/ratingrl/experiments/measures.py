"""What the report and the claims measure from a store's index rows, before any statistics.

* An **arm** is what a sweep compares: the trial's method, plus any override other than the
  environment (``r4``, or ``r4 budget=200`` when the grid also varies the budget).
* A **task** is an environment (policy trials) or a condition ``N=1000 K=4 p=0`` (fidelity).
* **Recovery** = a finished trial's final true return / the oracle's, same sweep, environment
  and seed (the oracle whose other overrides agree most, when a grid repeats the oracle). A
  ratio of returns means something only when the oracle's return is positive (DMC's are
  0..1000); trials on a task whose oracle return is not are left out, and counted.
* **Overhead** = env steps per CPU second of a learned-reward trial / the paired oracle's,
  evaluation excluded; "excluding updates" takes the reward updates' CPU seconds out too.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

__all__ = ["ORACLE", "arm", "task", "PolicyScores", "policy_scores", "fidelity_scores", "by_sweep"]

ORACLE = "oracle"
_NOT_ARM = {"env_id", "method", "ratings", "classes", "noise"}
"""Overrides that say where (task) or who (method) a trial is, not which arm."""


def _extras(row: Mapping) -> dict:
    overrides = json.loads(row.get("overrides") or "{}")
    return {k: v for k, v in overrides.items() if k not in _NOT_ARM}


def arm(row: Mapping) -> str:
    """``r4``, or ``r4 budget=200`` when the sweep varies more than method and environment."""
    extras = " ".join(f"{k}={_text(v)}" for k, v in sorted(_extras(row).items()))
    return f"{row['method']} {extras}".strip()


def task(row: Mapping) -> str:
    """The environment of a policy trial; ``env N=1000 K=4 p=0`` for a fidelity trial."""
    if row.get("kind") == "fidelity":
        return f"{row['env_id']} N={row['ratings']} K={row['classes']} p={row['noise']:g}"
    return str(row["env_id"])


def by_sweep(rows: Iterable[Mapping], kind: str) -> dict[str, list[dict]]:
    """Rows of one kind grouped by sweep name, in name order."""
    out: dict[str, list[dict]] = {}
    for row in rows:
        if row.get("kind") == kind:
            out.setdefault(str(row.get("sweep")), []).append(dict(row))
    return dict(sorted(out.items()))


Scores = dict[str, dict[str, list[float]]]
"""arm -> task -> one value per seed."""


@dataclass
class PolicyScores:
    """Per arm and task, one value per finished seed of each quantity."""

    returns: Scores = field(default_factory=dict)
    recovery: Scores = field(default_factory=dict)
    overhead: Scores = field(default_factory=dict)
    overhead_excluding_updates: Scores = field(default_factory=dict)
    update_seconds: Scores = field(default_factory=dict)
    unpaired: list[str] = field(default_factory=list)
    """Finished learned-reward trials without a usable oracle (none, or a return <= 0)."""


def policy_scores(rows: Iterable[Mapping]) -> PolicyScores:
    """Returns, recovery and overhead of every finished policy trial in ``rows``."""
    done = [dict(r) for r in rows if r.get("status") == "finished" and r.get("kind") == "policy"]
    oracles = [r for r in done if r["method"] == ORACLE]
    scores = PolicyScores()
    for row in sorted(done, key=lambda r: (r["sweep"], r["env_id"], arm(r), r["seed"])):
        name, where = arm(row), task(row)
        _add(scores.returns, name, where, row.get("true_return_final"))
        if row["method"] == ORACLE:
            continue
        _add(scores.update_seconds, name, where, row.get("reward_update_s"))
        oracle = _oracle_for(row, oracles)
        if oracle is None or not (oracle.get("true_return_final") or 0) > 0:
            scores.unpaired.append(row["trial_id"])
            continue
        _add(scores.recovery, name, where, row["true_return_final"] / oracle["true_return_final"])
        ours, theirs = row.get("env_steps_per_cpu_s"), oracle.get("env_steps_per_cpu_s")
        if ours and theirs:
            _add(scores.overhead, name, where, ours / theirs)
            steps = row["env_steps"]
            # CPU seconds of the updates (wall seconds only for runs from before they were kept)
            updates = row.get("reward_update_cpu_s")
            if updates is None:
                updates = row.get("reward_update_s") or 0.0
            cpu = steps / ours - updates
            if cpu > 0:
                _add(scores.overhead_excluding_updates, name, where, steps / cpu / theirs)
    return scores


def fidelity_scores(rows: Iterable[Mapping], metric: str = "kendall_tau") -> Scores:
    """arm -> condition -> ``metric`` of each finished seed (fidelity trials)."""
    out: Scores = {}
    for row in rows:
        if row.get("kind") == "fidelity" and row.get("status") == "finished":
            _add(out, arm(row), task(row), row.get(metric))
    return out


def _oracle_for(row: Mapping, oracles: list[dict]) -> dict | None:
    """The oracle trial of the same sweep, environment and seed whose other overrides agree
    with ``row``'s the most (ties: the first by trial id)."""
    same = [
        o
        for o in oracles
        if (o["sweep"], o["env_id"], o["seed"]) == (row["sweep"], row["env_id"], row["seed"])
    ]
    if not same:
        return None
    extras = _extras(row)

    def agreement(oracle: dict) -> tuple[int, str]:
        theirs = _extras(oracle)
        return (-sum(theirs.get(k) == v for k, v in extras.items()), oracle["trial_id"])

    return min(same, key=agreement)


def _add(scores: Scores, name: str, where: str, value) -> None:
    if value is not None:
        scores.setdefault(name, {}).setdefault(where, []).append(float(value))


def _text(value) -> str:
    if isinstance(value, list | tuple):
        return ",".join(str(v) for v in value)
    return json.dumps(value, separators=(",", ":")) if isinstance(value, dict) else str(value)
