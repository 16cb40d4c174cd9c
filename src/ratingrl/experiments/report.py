"""``ratingrl report STORE --out DIR``: every table and figure of the benchmarks, from the store.

The report is a pure function of the results store (and of the bootstrap's seed): run it again
on the same store and every number, table and figure comes out the same, so the tables in
``docs/benchmarks.md`` are regenerated rather than assembled by hand. It writes

* ``report.md``: the claims table, then per policy sweep the final returns, recovery (IQM with
  95% intervals), probability of improvement between methods, overhead against the oracle and
  learning curves; per fidelity sweep the Kendall tau tables against ratings, noise and
  classes; and the trials that failed;
* ``report.json``: the same numbers, for scripts;
* figures (PNG) next to them, linked from ``report.md``.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from ratingrl.experiments import measures, stats
from ratingrl.experiments.claims import load_claims, measure_claim
from ratingrl.experiments.report_runs import run_tables
from ratingrl.experiments.results import ResultStore

__all__ = ["write_report"]


def write_report(
    store: str | Path,
    out: str | Path,
    *,
    claims_file: str | Path | None = None,
    reps: int = stats.REPS,
    seed: int = 0,
) -> Path:
    """Write ``report.md``, ``report.json`` and the figures of ``store`` into ``out``."""
    results, out = ResultStore(store), Path(out)
    rows = results.rows()
    out.mkdir(parents=True, exist_ok=True)
    data: dict = {"store": results.root.name, "trials": _counts(rows), "bootstrap": {}}
    data["bootstrap"] = {"reps": reps, "seed": seed, "interval": "95% percentile, stratified"}
    data["claims"] = [measure_claim(c, rows, reps, seed) for c in load_claims(claims_file)]
    lines = _header(results.root.name, data) + _claims_table(data["claims"])
    data["policy"], data["fidelity"] = {}, {}
    for sweep, sweep_rows in measures.by_sweep(rows, "policy").items():
        text, data["policy"][sweep] = _policy(results, sweep, sweep_rows, out, reps, seed)
        lines += text
    for sweep, sweep_rows in measures.by_sweep(rows, "fidelity").items():
        text, data["fidelity"][sweep] = _fidelity(results, sweep, sweep_rows, out)
        lines += text
    lines += _failures(rows)
    (out / "report.json").write_text(json.dumps(data, indent=2, default=_json) + "\n")
    path = out / "report.md"
    path.write_text("\n".join(lines).rstrip() + "\n")
    return path


def _counts(rows: list[dict]) -> dict[str, int]:
    counts = {"all": len(rows)}
    for row in rows:
        counts[row["status"]] = counts.get(row["status"], 0) + 1
    return counts


def _header(name: str, data: dict) -> list[str]:
    counts = ", ".join(f"{v} {k}" for k, v in data["trials"].items() if k != "all")
    boot = data["bootstrap"]
    return [
        f"# Results: {name}",
        "",
        f"Regenerated from the results store by `ratingrl report` ({data['trials']['all']} "
        f"trials: {counts or 'none'}). Intervals are 95% stratified-bootstrap intervals over "
        f"seeds (percentile, {boot['reps']:,} resamples, seed {boot['seed']}); IQM is the mean "
        "of the middle 50% of all runs pooled over tasks (Agarwal et al., NeurIPS 2021). "
        "Recovery = final true return of a method / the oracle's, same sweep, task and seed. "
        "Only finished trials are counted.",
        "",
    ]


def _claims_table(claims: list[dict]) -> list[str]:
    if not claims:
        return []
    lines = [
        "## Claims",
        "",
        "| claim | source | target | measured [95% CI] | verdict | reproduce |",
        "|---|---|---:|---|---|---|",
    ]
    for claim in claims:
        measured = claim["measured"]
        value = stats.Interval(**measured).text() if measured else "-"
        detail = f" ({claim['detail']})" if claim["detail"] else ""
        lines.append(
            f"| {claim['text']} | {claim['source']} | {claim['target']:g} | {value}{detail} "
            f"| {claim['verdict']} | `{claim['command']}` |"
        )
    return [*lines, ""]


# -- policy sweeps ---------------------------------------------------------------------------
def _policy(
    results: ResultStore, sweep: str, rows: list[dict], out: Path, reps: int, seed: int
) -> tuple[list[str], dict]:
    scores = measures.policy_scores(rows)
    finished = [r for r in rows if r["status"] == "finished"]
    tasks = sorted({measures.task(r) for r in finished})
    arms = _ordered({measures.arm(r) for r in finished})
    lines = [f"## Policies: sweep `{sweep}`", "", _sweep_counts(rows), ""]
    data: dict = {"tasks": tasks, "arms": arms, "unpaired": scores.unpaired}

    lines += ["### Final true return (mean [95% CI], seeds)", ""]
    data["returns"] = {}
    if not tasks:
        lines += ["No finished trial yet.", ""]
    else:
        lines += ["| arm | " + " | ".join(tasks) + " |", "|---|" + "---:|" * len(tasks)]
    for name in arms if tasks else ():
        by_task = scores.returns.get(name, {})
        cells = {t: stats.mean_interval({t: v}, reps=reps, seed=seed) for t, v in by_task.items()}
        data["returns"][name] = {t: i.to_dict() for t, i in cells.items()}
        row = [f"{cells[t].text(1)} ({cells[t].runs})" if t in cells else "-" for t in tasks]
        lines.append(f"| {name} | " + " | ".join(row) + " |")
    lines += [""]
    recovery = {n: scores.recovery[n] for n in arms if n in scores.recovery}
    lines += _recovery(sweep, recovery, scores, tasks, arms, out, data, reps, seed)
    lines += _improvements(recovery, data, reps, seed)
    lines += _curves(results, sweep, rows, tasks, arms, out, data, reps, seed)
    lines += run_tables(results, rows, arms)
    return lines, data


def _recovery(sweep, recovery, scores, tasks, arms, out, data, reps, seed) -> list[str]:
    """The recovery and overhead table, the recovery intervals and performance profiles."""
    if not recovery:
        note = "no learned-reward trial has a finished oracle with a positive return yet"
        return ["### Recovery", "", f"Not measured: {note}.", ""]
    lines = [
        "### Recovery and overhead",
        "",
        "Overhead = env steps per CPU second against the oracle's (whole run; excluding the "
        "reward updates' seconds); reward updates = their total seconds per run.",
        "",
        "| arm | runs | recovery IQM [95% CI] | " + " | ".join(f"{t} (mean)" for t in tasks)
        + " | overhead [95% CI] | excl. updates | reward updates (s) |",
        "|---|---:|---|" + "---:|" * len(tasks) + "---|---|---:|",
    ]
    data["recovery"], intervals = {}, {}
    for name, by_task in recovery.items():
        iqm = stats.iqm_interval(by_task, reps=reps, seed=seed)
        over = stats.mean_interval(scores.overhead.get(name, {}), reps=reps, seed=seed)
        excl = stats.mean_interval(
            scores.overhead_excluding_updates.get(name, {}), reps=reps, seed=seed
        )
        updates = [v for vs in scores.update_seconds.get(name, {}).values() for v in vs]
        means = [f"{np.mean(by_task[t]):.2f}" if t in by_task else "-" for t in tasks]
        lines.append(
            f"| {name} | {iqm.runs} | {iqm.text()} | " + " | ".join(means)
            + f" | {over.text()} | {excl.text()} | {np.mean(updates) if updates else 0:.0f} |"
        )
        intervals[name] = iqm
        data["recovery"][name] = {
            "iqm": iqm.to_dict(),
            "per_task": by_task,
            "overhead": over.to_dict(),
            "overhead_excluding_updates": excl.to_dict(),
        }
    from ratingrl.experiments.report_figures import plot_intervals, plot_profiles

    title = f"{sweep}: recovery (IQM, 95% CI)"
    figure = plot_intervals(intervals, out / f"{sweep}_recovery.png", title, "recovery", 1.0, arms)
    top = max(1.5, max(v for by_task in recovery.values() for vs in by_task.values() for v in vs))
    taus = np.linspace(0.0, 1.05 * top, 61)
    profiles = {
        n: (taus, *stats.performance_profile(v, taus, reps=reps, seed=seed))
        for n, v in recovery.items()
    }
    title = f"{sweep}: performance profiles"
    profile = plot_profiles(profiles, out / f"{sweep}_profiles.png", title, "recovery", arms)
    return [*lines, "", f"![recovery]({figure.name}) ![profiles]({profile.name})", ""]


def _improvements(recovery: Mapping, data: dict, reps: int, seed: int) -> list[str]:
    names = [n for n in recovery if n != measures.ORACLE]
    if len(names) < 2:
        return []
    lines = [
        "### Probability of improvement (recovery)",
        "",
        "| X | Y | P(X > Y) [95% CI] |",
        "|---|---|---|",
    ]
    data["improvement"] = {}
    for x, y in itertools.permutations(names, 2):
        interval = stats.probability_of_improvement(recovery[x], recovery[y], reps=reps, seed=seed)
        data["improvement"][f"{x} > {y}"] = interval.to_dict()
        lines.append(f"| {x} | {y} | {interval.text()} |")
    return [*lines, ""]


def _curves(results, sweep, rows, tasks, arms, out, data, reps, seed) -> list[str]:
    """One figure per task: each arm's mean learning curve over seeds in its 95% band."""
    from ratingrl.experiments.report_figures import plot_curve_bands

    lines, data["curves"] = ["### Learning curves (true return, mean and 95% CI)", ""], {}
    finished = [r for r in rows if r["status"] == "finished"]
    for where in tasks:
        bands = {}
        for name in arms:
            curves = [
                (c["env_steps"], c["true_return"])
                for c in (
                    results.curve(r["trial_id"])
                    for r in finished
                    if measures.task(r) == where and measures.arm(r) == name
                )
            ]
            if curves:
                bands[name] = stats.curve_band(curves, reps=reps, seed=seed)
        if not bands:
            continue
        slug = where.replace("/", "_")
        path = out / f"{sweep}_curves_{slug}.png"
        figure = plot_curve_bands(bands, path, f"{sweep}: {where}", order=arms)
        data["curves"][where] = {n: b.__dict__ for n, b in bands.items()}
        lines += [f"![{where}]({figure.name})", ""]
    return lines


# -- fidelity sweeps -------------------------------------------------------------------------
def _fidelity(
    results: ResultStore, sweep: str, rows: list[dict], out: Path
) -> tuple[list[str], dict]:
    from ratingrl.experiments.fidelity import summarise
    from ratingrl.experiments.plots import plot_fidelity

    lines = [f"## Reward fidelity: sweep `{sweep}`", "", _sweep_counts(rows), ""]
    data, reports = {}, []
    finished = [r for r in rows if r["status"] == "finished"]
    for env in sorted({r["env_id"] for r in finished}):
        runs = []
        for row in (r for r in finished if r["env_id"] == env):
            summary = dict(results.summary(row["trial_id"]) or {})
            runs.append({**summary, "method": measures.arm(row)})
        methods = _ordered({r["method"] for r in runs})
        conditions = summarise(runs, methods)
        data[env] = conditions
        reports.append({"config": {"env_id": env}, "conditions": conditions})
        lines += [*_fidelity_table(env, conditions, methods), ""]
    if reports:
        figure = plot_fidelity(reports, out / f"{sweep}_fidelity.png")
        lines += [f"![fidelity]({figure.name})", ""]
    return lines, data


def _fidelity_table(env: str, conditions: list[dict], methods: list[str]) -> list[str]:
    """Kendall tau (mean ± std over seeds) per condition, best in bold, as docs/benchmarks.md."""
    lines = [
        f"**{env}** — kendall tau on held-out segments (mean ± std over seeds)",
        "",
        "| N | K | noise | " + " | ".join(methods) + " |",
        "|---:|---:|---:|" + "---:|" * len(methods),
    ]
    for c in conditions:
        res = c["results"]
        best = max(res[m]["kendall_tau"]["mean"] for m in methods if m in res)
        cells = []
        for m in methods:
            if m not in res:
                cells.append("")
                continue
            v = res[m]["kendall_tau"]
            text = f"{v['mean']:.3f} ± {v['std']:.3f}"
            cells.append(f"**{text}**" if v["mean"] == best else text)
        lines.append(f"| {c['ratings']} | {c['classes']} | {c['noise']:g} | {' | '.join(cells)} |")
    return lines


# -- shared ----------------------------------------------------------------------------------
def _sweep_counts(rows: list[dict]) -> str:
    counts = _counts(rows)
    parts = ", ".join(f"{v} {k}" for k, v in counts.items() if k != "all")
    return f"{counts['all']} trials: {parts}."


def _failures(rows: list[dict]) -> list[str]:
    failed = [r for r in rows if r["status"] == "failed"]
    if not failed:
        return []
    lines = ["## Failed trials", "", "| trial | error |", "|---|---|"]
    lines += [f"| {r['trial_id']} | {(r.get('error') or '').replace('|', '/')} |" for r in failed]
    return [*lines, ""]


def _ordered(names: set[str]) -> list[str]:
    """The oracle first, then the methods in the order of ratingrl's tracks, then the rest."""
    from ratingrl.experiments.tracks import METHODS

    rank = {m: i for i, m in enumerate(METHODS)}
    return sorted(names, key=lambda n: (rank.get(n.split(" ")[0], len(rank)), n))


def _json(value):
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"cannot write {type(value).__name__} to JSON")
