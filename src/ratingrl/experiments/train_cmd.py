"""``ratingrl train``: a policy from ratings (offline dataset or online queries), or the oracle.

Registered by the CLI with ``app.command("train")(train_command)``. Every option maps onto one
field of :class:`ratingrl.rl.train.RunConfig`; the help strings say the same things.

    ratingrl train --env dmc/cartpole-balance --algo sac --method oracle --steps 3000 --out runs/o
    ratingrl train --env dmc/walker-walk --method r4 --mode offline --dataset rated.parquet --out r
    ratingrl train --env dmc/walker-walk --method rbrl --mode online --budget 100 --per-round 10
    ratingrl train --env dmc/walker-walk --method "multitask[alpha=1]" --out runs/mt
    ratingrl train --env dmc/cartpole-balance --algo ppo --method bt --budget 200 --out runs/bt
    ratingrl train --env dmc/walker-walk --method r4 --budget 100 --preference-budget 100 --out m
    ratingrl train --resume runs/o
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

__all__ = ["train_command"]

console = Console()


def _numbers(text: str, name: str, kind=int) -> tuple:
    try:
        return tuple(kind(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise _fail(f"--{name} takes comma-separated numbers, got {text!r}") from None


def _fail(message: str) -> typer.Exit:
    console.print(f"[red]error:[/red] {message}", soft_wrap=True)
    return typer.Exit(code=2)


def train_command(
    out: Annotated[Path | None, typer.Option(help="run folder to create")] = None,
    resume: Annotated[
        Path | None, typer.Option(help="continue the run in this folder (its config is reused)")
    ] = None,
    env: Annotated[str, typer.Option(help="Gymnasium id or dmc/domain-task")] = (
        "dmc/cartpole-balance"
    ),
    algo: Annotated[str, typer.Option(help="sac | ppo")] = "sac",
    method: Annotated[
        str,
        typer.Option(
            help="r4 | rbrl | multitask | bt | regression | oracle (env reward); settings in "
            "brackets, e.g. 'multitask[alpha=1]' or 'rbrl[kappa=10]'"
        ),
    ] = "r4",
    mode: Annotated[str, typer.Option(help="offline (--dataset) | online (queries)")] = "online",
    steps: Annotated[int, typer.Option(help="environment steps of policy training")] = 100_000,
    seed: Annotated[int, typer.Option(help="seed of everything")] = 0,
    dataset: Annotated[Path | None, typer.Option(help="offline: rated dataset")] = None,
    preferences: Annotated[
        Path | None, typer.Option(help="offline: preference pairs (bt, or mixed with --dataset)")
    ] = None,
    budget: Annotated[int, typer.Option(help="online: total ratings")] = 100,
    per_round: Annotated[int, typer.Option(help="online: ratings per round")] = 10,
    preference_budget: Annotated[
        int,
        typer.Option(
            help="online: preference pairs asked for besides the ratings (rating methods only); "
            "the reward learns from both, Bradley-Terry weighted by --preference-weight"
        ),
    ] = 0,
    preference_weight: Annotated[
        float,
        typer.Option(help="weight of the Bradley-Terry loss when ratings and pairs are mixed"),
    ] = 1.0,
    schedule: Annotated[str, typer.Option(help="online: r4 | interval | explicit")] = "r4",
    schedule_unit: Annotated[
        int, typer.Option(help="online: r4 gap unit or interval, in env steps")
    ] = 10_000,
    schedule_steps: Annotated[
        str, typer.Option(help="online: explicit round steps, comma-separated")
    ] = "",
    selector: Annotated[
        str,
        typer.Option(
            help="online: uniform | disagreement | entropy | stratified (ratings only) | auto "
            "(stratified for ratings, entropy for bt's pairs)"
        ),
    ] = "auto",
    horizon: Annotated[int, typer.Option(help="online: segment length")] = 50,
    classes: Annotated[int, typer.Option(help="online teacher: rating levels")] = 4,
    coarse_classes: Annotated[
        int,
        typer.Option(help="online teacher: switch to this many levels later (0: never; R4 shift)"),
    ] = 0,
    switch_after: Annotated[
        int, typer.Option(help="online teacher: ratings given before the switch")
    ] = 40,
    rating_range: Annotated[
        str, typer.Option(help="online teacher: LOW,HIGH segment return (dmc: 0,horizon)")
    ] = "",
    rating_boundaries: Annotated[
        str,
        typer.Option(
            help="online teacher: R4's class boundaries on the episode-scaled return, e.g. "
            "0,30,60,100,200,300,400,500,600,800,1000 (replaces --classes/--rating-range)"
        ),
    ] = "",
    label_noise: Annotated[
        float, typer.Option(help="online teacher: random-rating rate (bt: flipped answers)")
    ] = 0.0,
    preference_equal_threshold: Annotated[
        float,
        typer.Option(
            help="online preference teacher: answer 'equal' when segment returns differ by "
            "less than this (0: B-Pref's oracle, exact ties go to the first segment)"
        ),
    ] = 0.0,
    pretrain_steps: Annotated[
        int, typer.Option(help="online: state-entropy pre-training steps (PEBBLE)")
    ] = 0,
    net_arch: Annotated[str, typer.Option(help="policy hidden layers")] = "256,256",
    batch_size: Annotated[int, typer.Option(help="SAC batch size")] = 256,
    learning_starts: Annotated[int, typer.Option(help="SAC random steps first")] = 1000,
    n_steps: Annotated[int, typer.Option(help="PPO rollout length")] = 2048,
    reward_hidden: Annotated[str, typer.Option(help="reward net hidden layers")] = "256,256",
    reward_epochs: Annotated[int, typer.Option(help="max epochs per reward update")] = 50,
    reward_val_fraction: Annotated[
        float | None,
        typer.Option(
            help="labels held out to pick the best epoch (default: 0.1 offline, 0 online: "
            "each update trains --reward-epochs on all labels)"
        ),
    ] = None,
    ensemble_size: Annotated[int, typer.Option(help="reward ensemble members")] = 3,
    n_envs: Annotated[int, typer.Option(help="parallel environment copies")] = 1,
    buffer_size: Annotated[int, typer.Option(help="SAC replay buffer capacity")] = 1_000_000,
    max_episode_steps: Annotated[
        int | None, typer.Option(help="cut episodes at this length")
    ] = None,
    eval_every: Annotated[int, typer.Option(help="env steps between evaluations")] = 10_000,
    eval_episodes: Annotated[int, typer.Option(help="episodes per evaluation")] = 5,
    checkpoint_every: Annotated[int, typer.Option(help="env steps between checkpoints")] = 10_000,
    overwrite: Annotated[bool, typer.Option(help="replace an existing run folder")] = False,
    ratings_db: Annotated[
        str | None,
        typer.Option(
            help="online: take ratings from people through the rating app's database "
            "(SQLAlchemy URL, e.g. sqlite:///ratings.db) instead of the simulated teacher"
        ),
    ] = None,
    ratings_project: Annotated[
        str | None, typer.Option(help="online: the app project (default: its only project)")
    ] = None,
    threads: Annotated[int, typer.Option(help="PyTorch threads")] = 1,
    progress: Annotated[bool, typer.Option(help="show a progress bar")] = True,
    check: Annotated[
        bool,
        typer.Option(
            "--check",
            help="only check the options (env, dataset, schedule, teacher), print the plan, "
            "and exit without training or writing anything",
        ),
    ] = False,
) -> None:
    """Train a policy with SAC or PPO on a reward learned from ratings (or the env's reward)."""
    import torch

    from ratingrl.feedback.segments import FeedbackError
    from ratingrl.rewards.training import parse_method_spec
    from ratingrl.rl.train import RunConfig, train

    torch.set_num_threads(max(1, threads))
    try:
        if resume is not None:
            stored = resume / "config.json"
            if not stored.exists():
                raise _fail(f"{resume} is not a run folder (no config.json)")
            config = RunConfig.load(stored)
            run_dir = resume
        else:
            if out is None and not check:
                raise _fail("give --out RUN_DIR (or --resume RUN_DIR)")
            rating = _numbers(rating_range, "rating-range", float)
            boundaries = _numbers(rating_boundaries, "rating-boundaries", float)
            if rating and len(rating) != 2:
                raise _fail(f"--rating-range takes LOW,HIGH, got {rating_range!r}")
            method_name, method_settings = parse_method_spec(method)
            config = RunConfig(
                env_id=env,
                algo=algo,
                method=method_name,
                method_settings=method_settings,
                mode=mode,
                total_steps=steps,
                seed=seed,
                max_episode_steps=max_episode_steps,
                net_arch=_numbers(net_arch, "net-arch"),
                batch_size=batch_size,
                learning_starts=learning_starts,
                n_steps=n_steps,
                reward_hidden=_numbers(reward_hidden, "reward-hidden"),
                reward_epochs=reward_epochs,
                reward_val_fraction=reward_val_fraction,
                ensemble_size=ensemble_size,
                n_envs=n_envs,
                buffer_size=buffer_size,
                dataset=None if dataset is None else str(dataset),
                preferences=None if preferences is None else str(preferences),
                preference_weight=preference_weight,
                budget=budget,
                per_round=per_round,
                preference_budget=preference_budget,
                schedule=schedule,
                schedule_unit=schedule_unit,
                schedule_steps=_numbers(schedule_steps, "schedule-steps"),
                horizon=horizon,
                selector=selector,
                n_classes=classes,
                coarse_classes=coarse_classes,
                switch_after=switch_after,
                rating_range=rating or None,
                rating_boundaries=boundaries or None,
                label_noise=label_noise,
                preference_equal_threshold=preference_equal_threshold,
                pretrain_steps=pretrain_steps,
                eval_every=eval_every,
                eval_episodes=eval_episodes,
                checkpoint_every=checkpoint_every,
            )
            run_dir = out
        if check:
            from ratingrl.rl.train import check as check_run

            console.print_json(json.dumps(check_run(config)))
            return
        source = None
        if ratings_db is not None:
            from ratingrl.app.source import AppRatingSource

            source = AppRatingSource(ratings_db, ratings_project)
        summary = train(
            config,
            run_dir,
            resume=resume is not None,
            overwrite=overwrite,
            progress=progress,
            source=source,
        )
    except (FeedbackError, ValueError) as err:
        raise _fail(str(err)) from None
    final, best = summary["true_return_final"], summary["true_return_best"]
    learned = summary["learned_return_final"]
    console.print(
        f"true return {final['mean']:.1f} ± {final['std']:.1f} (best {best['mean']:.1f}); "
        + (f"learned {learned['mean']:.2f}; " if learned else "")
        + f"{summary['labels_used']} labels; {summary['env_steps']} steps at "
        f"{summary['env_steps_per_s'] or 0:.0f}/s; summary in {run_dir / 'summary.json'}"
    )
