"""``ratingrl bench ordinal``: the command only, without the weight.

The configuration lives in :mod:`ratingrl.experiments.ordinal_config`; the runner
(:mod:`ratingrl.experiments.ordinal_bench`) needs PyTorch and SciPy and is imported only when the
benchmark actually runs, so the ``ratingrl`` command starts in a fraction of a second.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Annotated, Any

import typer

from ratingrl.experiments.ordinal_config import METHODS, OrdinalBenchConfig

__all__ = ["ordinal_command"]


def ordinal_command(
    out: Annotated[Path, typer.Option("--out", help="Result JSON path.")] = Path(
        "results/ordinal.json"
    ),
    seeds: Annotated[int, typer.Option(help=OrdinalBenchConfig.help("seeds"))] = 3,
    quick: Annotated[bool, typer.Option("--quick", help="Tiny smoke-size run (seconds).")] = False,
    steps: Annotated[int | None, typer.Option(help=OrdinalBenchConfig.help("steps"))] = None,
    warm_steps: Annotated[
        int | None, typer.Option(help=OrdinalBenchConfig.help("warm_steps"))
    ] = None,
    methods: Annotated[
        str | None, typer.Option(help="Comma-separated subset of: " + ", ".join(METHODS))
    ] = None,
    workers: Annotated[int | None, typer.Option(help=OrdinalBenchConfig.help("workers"))] = None,
    plot: Annotated[bool, typer.Option(help="Also save a PNG next to --out.")] = True,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
) -> None:
    """Compare GRPO with ranking-aware rewards against supervised ordinal baselines (CPU)."""
    overrides: dict[str, Any] = {"seeds": seeds}
    for name, value in (("steps", steps), ("warm_steps", warm_steps), ("workers", workers)):
        if value is not None:
            overrides[name] = value
    if methods:
        overrides["methods"] = tuple(m.strip() for m in methods.split(",") if m.strip())
    config = (
        OrdinalBenchConfig.quick(**overrides)
        if quick
        else replace(OrdinalBenchConfig(), **overrides)
    )
    from ratingrl.experiments.ordinal_bench import (
        format_table,
        plot_results,
        run_ordinal_benchmark,
    )

    result = run_ordinal_benchmark(config, progress=progress)
    result["command"] = _command_line(out, seeds, quick, steps, warm_steps, methods, workers)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    typer.echo(format_table(result))
    typer.echo(f"wall time {result['wall_time_s']} s -> {out}")
    if plot:
        typer.echo(f"plot -> {plot_results(result, out.with_suffix('.png'))}")


def _command_line(out: Path, seeds: int, quick: bool, *options: Any) -> str:
    """The canonical command that reproduces a run (stored in the result JSON)."""
    names = ("--steps", "--warm-steps", "--methods", "--workers")
    parts = ["ratingrl", "bench", "ordinal", "--seeds", str(seeds), "--out", str(out)]
    parts += ["--quick"] if quick else []
    for name, value in zip(names, options, strict=True):
        if value is not None:
            parts += [name, str(value)]
    return " ".join(parts)
