"""Benchmarks that write JSON reports, and their plots.

    ratingrl bench fidelity --env HalfCheetah-v5 --methods r4,rbrl --ratings 100,300,1000
    ratingrl bench ordinal --seeds 3 --out results/ordinal.json
    ratingrl bench reward-vs-policy runs/evidence --out reward_vs_policy.json
    ratingrl plot fidelity.json --out fidelity.png
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Annotated, Any

import typer
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ratingrl.cli.common import EnvOpt, PluginsOpt, console, fail, numbers
from ratingrl.cli.data import (
    DEFAULT_POOL_STEPS,
    PoolEpisodesOpt,
    PoolMaxStepsOpt,
    PoolSegmentsOpt,
    PoolStepsOpt,
    pool_spec,
)
from ratingrl.experiments.ordinal_config import METHODS as ORDINAL_METHODS
from ratingrl.experiments.ordinal_config import OrdinalBenchConfig

__all__ = ["bench_app", "plot"]

bench_app = typer.Typer(help="Benchmarks that write JSON reports.", no_args_is_help=True)

_FLAGS = {"ratings": "--ratings", "classes": "--classes"}
"""The flag of ``bench fidelity`` that sets each FidelityConfig field a pool may refuse."""


@bench_app.command("fidelity")
def bench_fidelity(
    out: Annotated[Path, typer.Option(help="JSON report to write")] = Path("fidelity.json"),
    env: EnvOpt = "HalfCheetah-v5",
    methods: Annotated[
        str, typer.Option(help=r"comma-separated; settings in brackets: r4\[norm_penalty=0.05]")
    ] = "r4,rbrl,multitask,bt,regression",
    ratings: Annotated[str, typer.Option(help="labels per run, comma-separated")] = "1000",
    classes: Annotated[str, typer.Option(help="rating levels, comma-separated")] = "4",
    noise: Annotated[str, typer.Option(help="label-noise level(s) p, comma-separated")] = "0",
    noise_model: Annotated[
        str, typer.Option(help="uniform (relabel with prob p) | adjacent (R4's swaps)")
    ] = "uniform",
    seeds: int = 3,
    epochs: int = 60,
    hidden: Annotated[str, typer.Option(help="reward net widths")] = "64,64",
    workers: Annotated[int, typer.Option(help="parallel processes (1 thread each)")] = 2,
    plugins: PluginsOpt = "",
    pool_steps: PoolStepsOpt = DEFAULT_POOL_STEPS,
    pool_episodes: PoolEpisodesOpt = 4,
    pool_max_steps: PoolMaxStepsOpt = 1000,
    pool_segments: PoolSegmentsOpt = None,
) -> None:
    """Learn rewards from N ratings with each method; score Kendall tau on held-out segments.

    A request the pool cannot serve (more ratings than its training segments, more classes than
    its returns split into) stops before any run with the flag, its value and the limit.
    """
    from ratingrl.experiments.fidelity import FidelityConfig, RequestError, run_fidelity
    from ratingrl.rewards.methods import split_method_specs

    try:
        spec = pool_spec(env, pool_steps, pool_episodes, pool_max_steps, 0, pool_segments)
        base = FidelityConfig(env_id=env, pool=spec)
        config = FidelityConfig(
            env_id=env,
            pool=spec,
            methods=split_method_specs(methods),
            ratings=numbers(ratings, "--ratings"),
            classes=numbers(classes, "--classes"),
            noise=numbers(noise, "--noise", float),
            noise_model=noise_model,
            seeds=seeds,
            trainer=replace(
                base.trainer,
                epochs=epochs,
                net=replace(base.trainer.net, hidden=numbers(hidden, "--hidden")),
            ),
            workers=workers,
            plugins=tuple(m.strip() for m in plugins.split(",") if m.strip()),
        )
    except ValueError as err:
        raise fail(str(err)) from None
    try:
        report = run_fidelity(config, out)
    except RequestError as err:
        larger = f"--pool-segments N (now {spec.level_target} a level)"
        raise fail(err.message(_FLAGS.get(err.field, err.field), larger)) from None
    except ValueError as err:  # a level of a new pool short of its segments, or bad data
        raise fail(str(err)) from None
    _print_fidelity(report)
    console.print(f"report written to {out} ({report['wall_time_s']:.0f} s)")


def _print_fidelity(report: dict) -> None:
    for condition in report["conditions"]:
        table = Table(
            title=f"{report['config']['env_id']}: N={condition['ratings']} "
            f"K={condition['classes']} noise={condition['noise']:g}"
        )
        epic = _epic_header(condition["results"])
        for column in ("method", "Kendall tau", *epic, "Spearman", "label acc.", "s/run"):
            table.add_column(column)
        for method, r in condition["results"].items():
            metrics = ("kendall_tau", "epic", "spearman") if epic else ("kendall_tau", "spearman")
            table.add_row(
                escape(method),  # r4[norm_penalty=0.05] is a name, not markup
                *(f"{r[m]['mean']:.3f} ± {r[m]['std']:.3f}" if m in r else "-" for m in metrics),
                f"{r['label_accuracy']['mean']:.3f}",
                f"{r['wall_time_s']:.1f}",
            )
        console.print(table)


def _epic_header(results: dict) -> tuple[str, ...]:
    """The EPIC column's title (none when the runs have no EPIC), naming the fallback used
    when the pool had no simulator states to query the true reward at."""
    estimators = {r["epic_estimator"] for r in results.values() if "epic" in r}
    if not estimators:
        return ()
    if estimators == {"simulator"}:
        return ("EPIC (0 = same)",)
    return ("Pearson dist. (no sim. states)",)


@bench_app.command("reward-vs-policy")
def bench_reward_vs_policy(
    paths: Annotated[
        list[Path], typer.Argument(help="run folders, results stores or folders of runs")
    ],
    out: Annotated[Path | None, typer.Option(help="JSON report to write")] = None,
    build_pools: Annotated[
        bool, typer.Option(help="build a missing fidelity pool (minutes of CPU per env)")
    ] = False,
    envs: Annotated[str, typer.Option(help="only runs of these envs, comma-separated")] = "",
    split_seed: Annotated[int, typer.Option(help="seed of the pool's held-out split")] = 0,
    reps: Annotated[int, typer.Option(help="bootstrap resamples per interval")] = 10_000,
    seed: Annotated[int, typer.Option(help="seed of the bootstrap")] = 0,
) -> None:
    """Which reward figure predicts policy recovery: Kendall tau and EPIC of each finished run's
    learned reward on its env's fidelity pool, against final return / the oracle's, correlated
    (Spearman, 95% bootstrap interval over runs)."""
    from ratingrl.experiments.reward_vs_policy import RewardVsPolicyError, reward_vs_policy

    chosen = [e.strip() for e in envs.split(",") if e.strip()]
    started = time.perf_counter()
    try:
        report = reward_vs_policy(paths, build_pools, chosen, split_seed, reps, seed)
    except RewardVsPolicyError as err:
        raise fail(str(err)) from None
    report["command"] = " ".join(["ratingrl", *sys.argv[1:]])
    report["wall_time_s"] = time.perf_counter() - started
    _print_reward_vs_policy(report)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        console.print(f"report written to {out}")


def _print_reward_vs_policy(report: dict) -> None:
    def num(value: Any, digits: int = 3) -> str:
        return "-" if value is None else f"{value:.{digits}f}"

    table = Table(title="Each run's final reward and its policy's recovery", box=box.SIMPLE_HEAD)
    for column in ("from", "env", "method"):  # text wraps, figures never do
        table.add_column(column, overflow="fold")
    for column in ("seed", "return", "oracle", "recovery", "tau", "EPIC", "tau own"):
        table.add_column(column, no_wrap=True, justify="right")
    table.add_column("note", overflow="fold")
    for r in report["runs"]:
        table.add_row(
            escape(Path(r["folder"]).parent.name), r["env_id"], escape(r["method"]), str(r["seed"]),
            num(r["final_return"], 0), num(r["oracle_return"], 0), num(r["recovery"]),
            num(r.get("kendall_tau")), num(r.get("epic")), num(r["tau_own"]), r["note"],
        )  # fmt: skip
    # eleven columns: a report piped to a file gets 120 characters a line, not rich's 80
    (console if console.is_terminal else Console(width=120)).print(table)
    corr = Table(title="Spearman correlation with recovery across runs", box=box.SIMPLE_HEAD)
    for column in ("figure", "scope", "n", "Spearman", "95% CI"):
        corr.add_column(column)
    for c in report["correlations"]:
        ci = c["ci95"]
        corr.add_row(
            c["figure"], c["scope"], str(c["n"]), num(c["spearman"]),
            "-" if ci is None else f"[{ci[0]:.2f}, {ci[1]:.2f}]",
        )  # fmt: skip
    console.print(corr)


@bench_app.command("ordinal")
def bench_ordinal(
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
        str | None,
        typer.Option(help="Comma-separated subset of: " + ", ".join(ORDINAL_METHODS)),
    ] = None,
    workers: Annotated[int | None, typer.Option(help=OrdinalBenchConfig.help("workers"))] = None,
    plot: Annotated[bool, typer.Option(help="Also save a PNG next to --out.")] = True,
    progress: Annotated[bool, typer.Option(help="Show progress.")] = True,
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
    options = (steps, warm_steps, methods, workers)
    result["command"] = _ordinal_command_line(out, seeds, quick, *options)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    typer.echo(format_table(result))
    typer.echo(f"wall time {result['wall_time_s']} s -> {out}")
    if plot:
        typer.echo(f"plot -> {plot_results(result, out.with_suffix('.png'))}")


def _ordinal_command_line(out: Path, seeds: int, quick: bool, *options: Any) -> str:
    """The canonical command that reproduces a run (stored in the result JSON)."""
    names = ("--steps", "--warm-steps", "--methods", "--workers")
    parts = ["ratingrl", "bench", "ordinal", "--seeds", str(seeds), "--out", str(out)]
    parts += ["--quick"] if quick else []
    for name, value in zip(names, options, strict=True):
        if value is not None:
            parts += [name, str(value)]
    return " ".join(parts)


def plot(
    reports: Annotated[list[Path], typer.Argument(help="fidelity JSON reports")],
    out: Annotated[Path, typer.Option(help="figure to write (.png/.pdf)")] = Path("fidelity.png"),
    metric: Annotated[str, typer.Option(help="kendall_tau | spearman | label_accuracy")] = (
        "kendall_tau"
    ),
) -> None:
    """Plot a metric against ratings, noise and number of classes from fidelity reports."""
    from ratingrl.experiments.plots import load_reports, plot_fidelity

    try:
        path = plot_fidelity(load_reports(reports), out, metric)
    except (ValueError, KeyError) as err:
        raise fail(str(err)) from None
    console.print(f"figure written to {path}")
