"""Data commands: ``ratingrl pool``, ``ratingrl rate`` and ``ratingrl reward train``.

    ratingrl pool   --env HalfCheetah-v5                  # build/cache a pool of segments
    ratingrl rate   --env HalfCheetah-v5 --ratings 500 --out rated.parquet
    ratingrl reward train --data rated.parquet --method r4 --out reward.pt
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from ratingrl.cli.common import (
    EnvOpt,
    PluginsOpt,
    ThreadsOpt,
    console,
    fail,
    load_plugins_or_fail,
    numbers,
    set_threads,
)

__all__ = [
    "pool",
    "rate",
    "reward_app",
    "PoolStepsOpt",
    "PoolEpisodesOpt",
    "PoolMaxStepsOpt",
    "PoolSegmentsOpt",
]

reward_app = typer.Typer(help="Learn reward models from rated datasets.", no_args_is_help=True)

PoolStepsOpt = Annotated[
    str,
    typer.Option(help="PPO steps at which behaviour is snapshotted for the pool (comma-separated)"),
]
PoolEpisodesOpt = Annotated[int, typer.Option(help="pool episodes per (snapshot, noise level)")]
PoolMaxStepsOpt = Annotated[int, typer.Option(help="pool episodes are cut at this many steps")]
PoolSegmentsOpt = Annotated[
    int | None,
    typer.Option(
        help="segments each (snapshot, noise level) gives at least: more episodes where they end "
        "early (default: what --pool-episodes full-length episodes give)"
    ),
]
DEFAULT_POOL_STEPS = "0,25000,50000,100000,200000"


def pool_spec(
    env: str, steps: str, episodes: int, max_steps: int, seed: int = 0, segments: int | None = None
):
    """The pool for ``env``; rejects an unknown environment before anything is built."""
    from ratingrl.feedback.envs import make_env
    from ratingrl.feedback.pool import PoolSpec

    make_env(env).close()
    if segments is not None and segments < 1:
        raise ValueError(f"--pool-segments must be a whole number >= 1, got {segments}")
    return PoolSpec(
        env,
        train_steps=numbers(steps, "--pool-steps"),
        episodes_per_policy=episodes,
        max_episode_steps=max_steps,
        seed=seed,
        segments_per_level=segments,
    )


def pool(
    env: EnvOpt = "HalfCheetah-v5",
    pool_steps: PoolStepsOpt = DEFAULT_POOL_STEPS,
    pool_episodes: PoolEpisodesOpt = 4,
    pool_max_steps: PoolMaxStepsOpt = 1000,
    pool_segments: PoolSegmentsOpt = None,
    seed: int = 0,
) -> None:
    """Build (or find in the cache) a pool of segments from behaviour of every quality."""
    import numpy as np

    from ratingrl.feedback.pool import cached_pool, pool_path
    from ratingrl.rl.behaviour import build_pool

    try:
        spec = pool_spec(env, pool_steps, pool_episodes, pool_max_steps, seed, pool_segments)
        segments = cached_pool(spec, build_pool)
    except ValueError as err:  # a bad option, or a level of the pool short of its segments
        raise fail(str(err)) from None
    returns = segments.true_returns
    console.print(
        f"{len(segments)} segments of {spec.horizon} steps in {pool_path(spec)}\n"
        f"segment return: min {returns.min():.1f}, median {float(np.median(returns)):.1f}, "
        f"max {returns.max():.1f}"
    )


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
    pool_segments: PoolSegmentsOpt = None,
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
        raise fail(f"{out} exists; pass --overwrite to replace it")
    try:
        spec = pool_spec(env, pool_steps, pool_episodes, pool_max_steps, 0, pool_segments)
        segments = cached_pool(spec, build_pool)
        rng = np.random.default_rng(seed)
        if ratings > len(segments):
            raise FeedbackError(
                f"--ratings {ratings} exceeds the pool's {len(segments)} segments; ask for at most "
                f"{len(segments)}, or --pool-segments N for a larger pool"
            )
        noise_models = (UniformRelabel(noise),) if noise else ()
        teacher = RatingTeacher(Bins.quantile(classes, segments.true_returns), noise_models)
        chosen = np.sort(rng.choice(len(segments), ratings, replace=False))
        data = teacher.rate_dataset(segments.subset(chosen), rng)
        data = replace(data, source={**data.source, "env_id": env, "pool": spec.to_dict()})
    except (FeedbackError, ValueError) as err:
        raise fail(str(err)) from None
    save_rated(data, out)
    console.print(f"wrote {len(data)} ratings to {out}; per class: {data.class_counts().tolist()}")


@reward_app.command("train")
def reward_train(
    data: Annotated[Path, typer.Option(help="rated dataset (.parquet) from `ratingrl rate`")],
    out: Annotated[Path, typer.Option(help="where to save the reward model (.pt)")],
    method: Annotated[
        str,
        typer.Option(help=r"r4 | rbrl | multitask | regression (or a plugin's); rbrl\[kappa=10]"),
    ] = "r4",
    epochs: int = 60,
    hidden: Annotated[str, typer.Option(help="hidden widths, comma-separated")] = "64,64",
    ensemble: int = 3,
    seed: int = 0,
    threads: ThreadsOpt = 1,
    plugins: PluginsOpt = "",
) -> None:
    """Train a reward ensemble on a rated dataset and report held-out agreement."""
    from ratingrl.feedback.io import load_rated
    from ratingrl.feedback.segments import FeedbackError
    from ratingrl.progress import progress_bar
    from ratingrl.rewards.methods import make_method, parse_method_spec
    from ratingrl.rewards.nets import RewardNetConfig
    from ratingrl.rewards.training import TrainerConfig, train_reward_model

    set_threads(threads)
    load_plugins_or_fail(plugins)
    try:
        dataset = load_rated(data)
        net = RewardNetConfig(hidden=numbers(hidden, "--hidden"), ensemble_size=ensemble)
        config = TrainerConfig(epochs=epochs, batch_size=64, seed=seed, net=net)
        name, settings = parse_method_spec(method)
        chosen = make_method(name, **settings)
        with progress_bar() as bar:
            task = bar.add_task(f"train {method}", total=epochs)

            def on_epoch(row: dict) -> None:
                bar.update(
                    task,
                    advance=1,
                    status=f"loss {row['loss']:.3f}  val tau {row['val_score']:.3f}  "
                    f"val acc {row['val_accuracy']:.3f}",
                )

            result = train_reward_model(dataset, chosen, config, on_epoch=on_epoch)
            bar.update(task, completed=epochs)
    except (FeedbackError, ValueError) as err:
        raise fail(str(err)) from None
    result.model.save(out, method=method, dataset=str(data), history=result.history)
    history = out.with_suffix(".history.csv")
    columns = list(result.history[0])
    lines = [",".join(columns)] + [",".join(str(row[c]) for c in columns) for row in result.history]
    history.write_text("\n".join(lines) + "\n")
    console.print(
        f"{method}: best epoch {result.best_epoch}, validation Kendall tau "
        f"{result.best_val_score:.3f}; model saved to {out}, training log to {history}"
    )
    _print_raters(dataset, result.extra)


def _print_raters(dataset, extra: dict) -> None:
    """Per rater, what the rater model learned of them (method ``raters`` only): an operator
    wants to see whose labels counted for less."""
    if "rater_weights" not in extra or dataset.rater is None:
        return
    names = list(dict.fromkeys(dataset.rater.tolist()))
    for name, weight, k in zip(names, extra["rater_weights"], extra["rater_classes"], strict=True):
        n = int((dataset.rater == name).sum())
        console.print(
            f"  rater {escape(str(name))}: {n} labels, {int(k)} classes, weight {weight:.2f}"
        )
