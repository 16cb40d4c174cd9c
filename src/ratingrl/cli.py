"""The ``ratingrl`` command: thin wrappers that parse options and call the library.

ratingrl pool   --env HalfCheetah-v5                  # build/cache a pool of segments
ratingrl rate   --env HalfCheetah-v5 --ratings 500    # a simulated teacher rates it
ratingrl reward train --data rated.parquet --method r4 --out reward.pt
ratingrl bench fidelity --env HalfCheetah-v5 --methods r4,rbrl --ratings 100,300,1000
ratingrl plot results.json --out fidelity.png
ratingrl demo
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(
    help="Reward functions and policies from ratings (RbRL, R4, multi-task, Bradley-Terry).",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
bench_app = typer.Typer(help="Benchmarks that write JSON reports.", no_args_is_help=True)
reward_app = typer.Typer(help="Learn reward models from rated datasets.", no_args_is_help=True)
app.add_typer(bench_app, name="bench")
app.add_typer(reward_app, name="reward")
console = Console()


def _fail(message: str) -> typer.Exit:
    console.print(f"[red]error:[/red] {message}", soft_wrap=True)
    return typer.Exit(code=2)


def _ints(text: str, name: str) -> tuple[int, ...]:
    try:
        return tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise _fail(f"--{name} takes comma-separated whole numbers, got {text!r}") from None


def _floats(text: str, name: str) -> tuple[float, ...]:
    try:
        return tuple(float(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise _fail(f"--{name} takes comma-separated numbers, got {text!r}") from None


def _set_threads(threads: int) -> None:
    import torch

    torch.set_num_threads(max(1, threads))


EnvOpt = Annotated[
    str, typer.Option("--env", help="Gymnasium id (HalfCheetah-v5) or dmc/domain-task")
]
ThreadsOpt = Annotated[int, typer.Option(help="PyTorch threads (tiny nets run best on 1)")]
PoolStepsOpt = Annotated[
    str,
    typer.Option(help="PPO steps at which behaviour is snapshotted for the pool (comma-separated)"),
]
PoolEpisodesOpt = Annotated[int, typer.Option(help="pool episodes per (snapshot, noise level)")]
PoolMaxStepsOpt = Annotated[int, typer.Option(help="pool episodes are cut at this many steps")]
DEFAULT_POOL_STEPS = "0,25000,50000,100000,200000"


def _pool_spec(env: str, steps: str, episodes: int, max_steps: int, seed: int = 0):
    """The pool for ``env``; rejects an unknown environment before anything is built."""
    from ratingrl.feedback.envs import make_env
    from ratingrl.feedback.pool import PoolSpec

    make_env(env).close()
    return PoolSpec(
        env,
        train_steps=_ints(steps, "pool-steps"),
        episodes_per_policy=episodes,
        max_episode_steps=max_steps,
        seed=seed,
    )


# -- pool / rate / reward ----------------------------------------------------------------------
@app.command()
def pool(
    env: EnvOpt = "HalfCheetah-v5",
    pool_steps: PoolStepsOpt = DEFAULT_POOL_STEPS,
    pool_episodes: PoolEpisodesOpt = 4,
    pool_max_steps: PoolMaxStepsOpt = 1000,
    seed: int = 0,
) -> None:
    """Build (or find in the cache) a pool of segments from behaviour of every quality."""
    import numpy as np

    from ratingrl.feedback.pool import cached_pool, pool_path
    from ratingrl.rl.behaviour import build_pool

    try:
        spec = _pool_spec(env, pool_steps, pool_episodes, pool_max_steps, seed)
    except ValueError as err:
        raise _fail(str(err)) from None
    segments = cached_pool(spec, build_pool)
    returns = segments.true_returns
    console.print(
        f"{len(segments)} segments of {spec.horizon} steps in {pool_path(spec)}\n"
        f"segment return: min {returns.min():.1f}, median {float(np.median(returns)):.1f}, "
        f"max {returns.max():.1f}"
    )


@app.command()
def rate(
    out: Annotated[Path, typer.Option(help="rated dataset to write (.parquet)")],
    env: EnvOpt = "HalfCheetah-v5",
    ratings: Annotated[int, typer.Option(help="how many segments to rate")] = 500,
    classes: Annotated[int, typer.Option(help="rating levels (quantile bins of the pool)")] = 4,
    noise: Annotated[float, typer.Option(help="probability of a uniformly random rating")] = 0.0,
    seed: int = 0,
    overwrite: Annotated[bool, typer.Option(help="replace an existing --out file")] = False,
    pool_steps: PoolStepsOpt = DEFAULT_POOL_STEPS,
    pool_episodes: PoolEpisodesOpt = 4,
    pool_max_steps: PoolMaxStepsOpt = 1000,
) -> None:
    """Have a simulated teacher rate segments of the pool; save them as a dataset."""
    from dataclasses import replace

    import numpy as np

    from ratingrl.feedback.io import save_rated
    from ratingrl.feedback.pool import cached_pool
    from ratingrl.feedback.segments import FeedbackError
    from ratingrl.feedback.teachers import Bins, RatingTeacher, UniformRelabel
    from ratingrl.rl.behaviour import build_pool

    if out.exists() and not overwrite:
        raise _fail(f"{out} exists; pass --overwrite to replace it")
    try:
        spec = _pool_spec(env, pool_steps, pool_episodes, pool_max_steps)
        segments = cached_pool(spec, build_pool)
        rng = np.random.default_rng(seed)
        if ratings > len(segments):
            raise FeedbackError(f"--ratings {ratings} exceeds the pool's {len(segments)} segments")
        noise_models = (UniformRelabel(noise),) if noise else ()
        teacher = RatingTeacher(Bins.quantile(classes, segments.true_returns), noise_models)
        chosen = np.sort(rng.choice(len(segments), ratings, replace=False))
        data = teacher.rate_dataset(segments.subset(chosen), rng)
        data = replace(data, source={**data.source, "env_id": env, "pool": spec.to_dict()})
    except (FeedbackError, ValueError) as err:
        raise _fail(str(err)) from None
    save_rated(data, out)
    console.print(f"wrote {len(data)} ratings to {out}; per class: {data.class_counts().tolist()}")


@reward_app.command("train")
def reward_train(
    data: Annotated[Path, typer.Option(help="rated dataset (.parquet) from `ratingrl rate`")],
    out: Annotated[Path, typer.Option(help="where to save the reward model (.pt)")],
    method: Annotated[
        str, typer.Option(help="r4 | rbrl | multitask | regression; settings as rbrl[kappa=10]")
    ] = "r4",
    epochs: int = 60,
    hidden: Annotated[str, typer.Option(help="hidden widths, comma-separated")] = "64,64",
    ensemble: int = 3,
    seed: int = 0,
    threads: ThreadsOpt = 1,
) -> None:
    """Train a reward ensemble on a rated dataset and report held-out agreement."""
    from ratingrl.feedback.io import load_rated
    from ratingrl.feedback.segments import FeedbackError
    from ratingrl.progress import progress_bar
    from ratingrl.rewards.nets import RewardNetConfig
    from ratingrl.rewards.training import (
        TrainerConfig,
        method_config,
        parse_method_spec,
        train_reward_model,
    )

    _set_threads(threads)
    try:
        dataset = load_rated(data)
        config = TrainerConfig(
            epochs=epochs,
            batch_size=64,
            seed=seed,
            net=RewardNetConfig(hidden=_ints(hidden, "hidden"), ensemble_size=ensemble),
        )
        with progress_bar() as bar:
            task = bar.add_task(f"train {method}", total=epochs)

            def on_epoch(row: dict) -> None:
                bar.update(
                    task,
                    advance=1,
                    status=f"loss {row['loss']:.3f}  val tau {row['val_score']:.3f}  "
                    f"val acc {row['val_accuracy']:.3f}",
                )

            name, settings = parse_method_spec(method)
            method_settings = method_config(name, **settings)
            result = train_reward_model(dataset, method_settings, config, on_epoch=on_epoch)
            bar.update(task, completed=epochs)
    except (FeedbackError, ValueError) as err:
        raise _fail(str(err)) from None
    result.model.save(out, method=method, dataset=str(data), history=result.history)
    history = out.with_suffix(".history.csv")
    columns = list(result.history[0])
    lines = [",".join(columns)] + [",".join(str(row[c]) for c in columns) for row in result.history]
    history.write_text("\n".join(lines) + "\n")
    console.print(
        f"{method}: best epoch {result.best_epoch}, validation Kendall tau "
        f"{result.best_val_score:.3f}; model saved to {out}, training log to {history}"
    )


# -- benchmarks, plots, demo -------------------------------------------------------------------
@bench_app.command("fidelity")
def bench_fidelity(
    out: Annotated[Path, typer.Option(help="JSON report to write")] = Path("fidelity.json"),
    env: EnvOpt = "HalfCheetah-v5",
    methods: Annotated[
        str, typer.Option(help="comma-separated")
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
    pool_steps: PoolStepsOpt = DEFAULT_POOL_STEPS,
    pool_episodes: PoolEpisodesOpt = 4,
    pool_max_steps: PoolMaxStepsOpt = 1000,
) -> None:
    """Learn rewards from N ratings with each method; score Kendall tau on held-out segments."""
    from dataclasses import replace

    from ratingrl.experiments.fidelity import FidelityConfig, run_fidelity
    from ratingrl.rewards.training import split_method_specs

    try:
        spec = _pool_spec(env, pool_steps, pool_episodes, pool_max_steps)
        base = FidelityConfig(env_id=env, pool=spec)
        config = FidelityConfig(
            env_id=env,
            pool=spec,
            methods=split_method_specs(methods),
            ratings=_ints(ratings, "ratings"),
            classes=_ints(classes, "classes"),
            noise=_floats(noise, "noise"),
            noise_model=noise_model,
            seeds=seeds,
            trainer=replace(
                base.trainer,
                epochs=epochs,
                net=replace(base.trainer.net, hidden=_ints(hidden, "hidden")),
            ),
            workers=workers,
        )
    except ValueError as err:
        raise _fail(str(err)) from None
    report = run_fidelity(config, out)
    _print_fidelity(report)
    console.print(f"report written to {out} ({report['wall_time_s']:.0f} s)")


def _print_fidelity(report: dict) -> None:
    for condition in report["conditions"]:
        table = Table(
            title=f"{report['config']['env_id']}: N={condition['ratings']} "
            f"K={condition['classes']} noise={condition['noise']:g}"
        )
        for column in ("method", "Kendall tau", "Spearman", "label acc.", "s/run"):
            table.add_column(column)
        for method, r in condition["results"].items():
            table.add_row(
                method,
                *(f"{r[m]['mean']:.3f} ± {r[m]['std']:.3f}" for m in ("kendall_tau", "spearman")),
                f"{r['label_accuracy']['mean']:.3f}",
                f"{r['wall_time_s']:.1f}",
            )
        console.print(table)


from ratingrl.app.commands import app_cli, serve_command  # noqa: E402
from ratingrl.experiments.ordinal_cli import ordinal_command  # noqa: E402
from ratingrl.experiments.train_cmd import train_command  # noqa: E402

bench_app.command("ordinal")(ordinal_command)
app.command("train")(train_command)
app.command("serve")(serve_command)
app.add_typer(app_cli, name="app")


@app.command()
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
        raise _fail(str(err)) from None
    console.print(f"figure written to {path}")


@app.command()
def demo(
    out_dir: Annotated[Path, typer.Option(help="where results go")] = Path("demo_out"),
    ratings: int = 500,
    seed: int = 0,
    policy: Annotated[
        bool, typer.Option(help="also train a policy on a learned reward (about 3 more minutes)")
    ] = True,
    threads: ThreadsOpt = 1,
) -> None:
    """Ratings -> reward (HalfCheetah-v5: R4 vs RbRL) -> policy (Pendulum: SAC), with plots."""
    from ratingrl.experiments.demo import DemoConfig, run_demo

    _set_threads(threads)
    console.rule("1. ratings -> reward: how well do learned rewards order unseen behaviour?")
    results = run_demo(DemoConfig(ratings=ratings, seed=seed, out_dir=str(out_dir)))
    table = Table(title=f"Learned reward vs true return on held-out segments ({ratings} ratings)")
    for column in ("method", "Kendall tau", "Spearman", "label accuracy", "train s"):
        table.add_column(column)
    for name, r in results.items():
        table.add_row(
            name,
            f"{r['kendall_tau']:.3f}",
            f"{r['spearman']:.3f}",
            f"{r['label_accuracy']:.3f}",
            f"{r['train_time_s']:.0f}",
        )
    console.print(table)
    console.print(f"plot: {out_dir / 'fidelity.png'}; dataset: {out_dir / 'rated.parquet'}")
    report = {"reward": results}
    if policy:
        from ratingrl.experiments.policy_demo import run_policy_demo

        console.rule("2. ratings -> reward -> policy: SAC on a reward learned from 100 ratings")
        report["policy"] = run_policy_demo(out_dir)
    (out_dir / "results.json").write_text(json.dumps(report, indent=2, default=str))
    console.print(f"all results: {out_dir / 'results.json'}")


if __name__ == "__main__":  # pragma: no cover
    app()
