"""Sweeps on Ray, their results store, and the report regenerated from it.

    ratingrl sweep examples/sweeps/quick.toml                  # a local Ray instance
    ratingrl sweep examples/sweeps/sac300k.toml --store runs/evidence --address auto
    ratingrl sweep examples/sweeps/quick.toml --plan           # the trials and their status
    ratingrl results runs/sweeps/quick --where method=r4 --where env_id=dmc/cartpole-balance
    ratingrl report runs/sweeps/quick --out reports/quick

Ray, rliable, matplotlib and torch are imported inside the commands: ``ratingrl --help`` stays
fast.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from ratingrl.cli.common import console, fail

__all__ = ["register", "sweep_command", "results_command", "report_command"]

_POLICY_COLUMNS = (
    "true_return_final",
    "learned_return_final",
    "labels",
    "env_steps",
    "env_steps_per_cpu_s",
)
_FIDELITY_COLUMNS = ("kendall_tau", "spearman", "label_accuracy")
_HEADERS = {
    "true_return_final": "true return",
    "learned_return_final": "learned",
    "env_steps": "steps",
    "env_steps_per_cpu_s": "steps/CPU s",
    "kendall_tau": "tau",
    "label_accuracy": "label acc.",
}
_STATUS_STYLE = {"finished": "green", "failed": "red", "running": "cyan", "stopped": "yellow"}


def register(app: typer.Typer) -> None:
    """Add ``sweep``, ``results`` and ``report`` to the ``ratingrl`` command."""
    app.command("sweep")(sweep_command)
    app.command("results")(results_command)
    app.command("report")(report_command)


def sweep_command(
    spec: Annotated[Path, typer.Argument(help="sweep file (TOML): base, grid, variants, seeds")],
    store: Annotated[
        Path | None,
        typer.Option(help="results store (default: the file's `store`, else runs/sweeps/NAME)"),
    ] = None,
    address: Annotated[
        str | None,
        typer.Option(
            help="join a running Ray cluster: auto, or ray://HOST:10001 (default: start a local "
            "Ray instance); the store must be on a file system every node mounts"
        ),
    ] = None,
    cpus: Annotated[
        int | None, typer.Option(help="CPUs of the local Ray instance (default: every core)")
    ] = None,
    max_running: Annotated[
        int | None, typer.Option(help="trials at once (default: as many as the cluster fits)")
    ] = None,
    retry_failed: Annotated[bool, typer.Option(help="run failed trials again")] = True,
    plan_only: Annotated[
        bool, typer.Option("--plan", help="print the trials and their status; run nothing")
    ] = False,
    progress: Annotated[bool, typer.Option(help="show progress")] = True,
) -> None:
    """Run every trial of a sweep on Ray; finished trials are skipped, stopped ones resumed.

    Exits with status 1 when a trial failed (each failure is in the trial's folder, the index
    and the table printed at the end; the other trials ran).
    """
    from ratingrl.experiments.results import ResultStore
    from ratingrl.experiments.sweep import SweepOptions, plan, run_sweep
    from ratingrl.experiments.sweep_spec import SpecError, load_spec

    try:
        parsed = load_spec(spec)
        root = store or Path(parsed.store or Path("runs") / "sweeps" / parsed.name)
        if plan_only:
            _print_plan(plan(parsed, ResultStore(root)), root)
            return
        options = SweepOptions(address, cpus, max_running, retry_failed, progress)
        outcome = run_sweep(parsed, root, options)
    except (SpecError, ValueError) as err:
        raise fail(str(err)) from None
    except ConnectionError as err:  # no Ray cluster at --address
        raise fail(f"--address {address}: {err}") from None
    console.print(
        f"{len(outcome.finished)} finished now, {len(outcome.skipped)} before, "
        f"{len(outcome.failed)} failed; store: {root}",
        highlight=False,
    )
    for trial_id, error in outcome.failed.items():
        first = error.strip().splitlines()[0] if error.strip() else "(no message)"
        console.print(f"[red]failed[/red] {escape(trial_id)}: {escape(first)}", soft_wrap=True)
    if outcome.failed:
        raise typer.Exit(code=1)


def results_command(
    store: Annotated[Path, typer.Argument(help="results store (a sweep's --store)")],
    where: Annotated[
        list[str] | None,
        typer.Option("--where", help="COLUMN=VALUE, e.g. method=r4 (repeatable: all must hold)"),
    ] = None,
    columns: Annotated[
        str | None, typer.Option(help="comma-separated columns (default: the usual ones)")
    ] = None,
    sort: Annotated[str | None, typer.Option(help="sort by this column")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the rows as JSON")] = False,
    rebuild: Annotated[
        bool, typer.Option(help="re-read every trial folder first (e.g. while a sweep runs)")
    ] = False,
) -> None:
    """Show the trials of a results store, filtered, as a table (or JSON)."""
    from ratingrl.experiments.results import ResultStore, parse_where

    try:
        results = ResultStore(store)
        if rebuild:
            results.rebuild()
        rows = results.rows(parse_where(where or []))
    except (FileNotFoundError, ValueError) as err:
        raise fail(str(err)) from None
    if sort:
        rows.sort(key=lambda r: (r.get(sort) is None, r.get(sort) or 0))
    shown = columns.split(",") if columns else _default_columns(rows)
    unknown = sorted({c for c in shown if rows and all(c not in r for r in rows)})
    if unknown:
        raise fail(f"--columns: no column {unknown}; columns: {sorted(rows[0])}")
    if as_json:
        console.print_json(json.dumps([{c: r.get(c) for c in shown} for r in rows]))
        return
    table = Table(title=f"{store}: {len(rows)} trials", title_justify="left")
    for column in shown:
        table.add_column(_HEADERS.get(column, column), overflow="fold")
    for row in rows:
        table.add_row(*(_cell(column, row.get(column)) for column in shown))
    console.print(table)


def report_command(
    store: Annotated[Path, typer.Argument(help="results store")],
    out: Annotated[Path, typer.Option(help="folder for report.md, report.json and figures")],
    claims: Annotated[
        Path | None, typer.Option(help="claims file (TOML; default: the papers' claims)")
    ] = None,
    reps: Annotated[int, typer.Option(help="bootstrap resamples per interval")] = 10_000,
    seed: Annotated[int, typer.Option(help="seed of the bootstrap (same seed, same report)")] = 0,
) -> None:
    """Tables, figures and the claims table, regenerated from a results store alone."""
    from ratingrl.experiments.report import write_report

    try:
        path = write_report(store, out, claims_file=claims, reps=reps, seed=seed)
    except (FileNotFoundError, ValueError) as err:
        raise fail(str(err)) from None
    console.print(f"report written to {path}", highlight=False)


# -- printing --------------------------------------------------------------------------------
def _default_columns(rows: list[dict]) -> list[str]:
    overrides: list[str] = []
    for row in rows:
        overrides += [k for k in json.loads(row.get("overrides") or "{}") if k not in overrides]
    kinds = {row.get("kind") for row in rows}
    metrics = [*(_POLICY_COLUMNS if "policy" in kinds else ())]
    metrics += [*(_FIDELITY_COLUMNS if "fidelity" in kinds else ())]
    base = ["sweep", "status", "method", "env_id"]
    return [*base, *(k for k in overrides if k not in base), "seed", *metrics, "error"]


def _cell(column: str, value) -> str:
    if value is None:
        return "-"
    if column == "status":
        style = _STATUS_STYLE.get(value)
        return f"[{style}]{value}[/{style}]" if style else value
    if isinstance(value, float):
        return f"{value:.3f}" if abs(value) < 10 else f"{value:.1f}"
    if column == "error" and len(str(value)) > 60:
        value = str(value)[:57] + "..."
    return escape(str(value))


def _print_plan(planned: list, root: Path) -> None:
    table = Table(title=f"{len(planned)} trials -> {root}", title_justify="left")
    for column in ("trial", "status", "overrides", "seed"):
        table.add_column(column, overflow="fold")
    for trial, status in planned:
        style = _STATUS_STYLE.get(status, "red" if status == "conflict" else "")
        overrides = json.dumps(trial.overrides)
        cell = f"[{style}]{status}[/{style}]" if style else status
        table.add_row(escape(trial.trial_id), cell, escape(overrides), str(trial.seed))
    console.print(table)
