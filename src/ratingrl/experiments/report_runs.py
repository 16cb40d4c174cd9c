"""The per-run tables of a policy sweep's report: each final evaluation with its own interval,
and how each run's learned reward ranked the segments its own policy produced.

The sweep-level tables pool seeds; these keep the runs apart, because one run's final
evaluation can swing by more than two methods differ (so it needs its own interval), and because
a learned reward that ranks the pool well can still rank the policy's later behaviour badly --
the per-update Kendall tau of ``summary.json``'s ``reward_fidelity`` (simulated teachers only)
says which.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from ratingrl.experiments import measures
from ratingrl.experiments.results import ResultStore

__all__ = ["run_tables"]


def run_tables(results: ResultStore, rows: Sequence[Mapping], arms: Sequence[str]) -> list[str]:
    """Markdown: final evaluation per run, then the reward on the policy's own segments."""
    finished = sorted(
        (r for r in rows if r.get("status") == "finished"),
        key=lambda r: (measures.task(r), arms.index(measures.arm(r)), r["seed"]),
    )
    if not finished:
        return []
    lines = [
        "### Each run's final evaluation",
        "",
        "True return of the final policy: mean over the evaluation episodes, [95% t-interval of",
        "that mean]; the interval says how far one run's number can be trusted.",
        "",
        "| task | arm | seed | episodes | final return [95% CI] |",
        "|---|---|---:|---:|---|",
    ]
    for row in finished:
        final = (results.summary(row["trial_id"]) or {}).get("true_return_final") or {}
        lines.append(
            f"| {measures.task(row)} | {measures.arm(row)} | {row['seed']} "
            f"| {len(final.get('episodes') or []) or '-'} | {_interval(final)} |"
        )
    lines += ["", *_own_segments(results, finished), ""]
    return lines


def _interval(final: Mapping) -> str:
    if final.get("mean") is None:
        return "-"
    ci = final.get("ci95")
    return f"{final['mean']:.0f}" + (f" [{ci[0]:.0f}, {ci[1]:.0f}]" if ci else "")


def _own_segments(results: ResultStore, finished: Sequence[Mapping]) -> list[str]:
    """One row per learned-reward run with per-update fidelity in its summary."""
    body = []
    for row in finished:
        updates = (results.summary(row["trial_id"]) or {}).get("reward_fidelity") or []
        if not updates:
            continue
        before = [u["tau_new_before"] for u in updates if u.get("tau_new_before") is not None]
        half = len(before) // 2
        last = updates[-1]
        body.append(
            f"| {measures.task(row)} | {measures.arm(row)} | {row['seed']} | {len(updates)} "
            f"| {_mean(before[:half])} | {_mean(before[half:])} | {_num(last.get('tau_all'))} "
            f"| {_num(last.get('tau_labels'))} | {last.get('classes_used', '-')} |"
        )
    if not body:
        return []
    return [
        "### The learned reward on the policy's own segments",
        "",
        "Kendall tau against the true return, per reward update. *Previous reward on new "
        "segments*: the reward the policy had been optimising, on the segments rated since it "
        "was trained (early and late halves of the run's updates); *final reward, all rated*: "
        "the last reward on every rated segment; *ratings*: the teacher's classes themselves "
        "(the ceiling coarse classes leave).",
        "",
        "| task | arm | seed | updates | previous reward on new segments, early | late "
        "| final reward, all rated | ratings | classes used |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
        *body,
    ]


def _mean(values: Sequence[float]) -> str:
    return f"{np.mean(values):.2f}" if values else "-"


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"
