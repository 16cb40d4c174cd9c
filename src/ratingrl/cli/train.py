"""``ratingrl train``: a policy from ratings (offline dataset or online queries), or the oracle.

The run's options are generated from :class:`ratingrl.rl.config.RunConfig`: every field is an
option with the field's help and default (``ratingrl train --help``). On top of them:
``--config run.json`` starts from any saved ``config.json``, ``--set key=value`` sets any field
(last word), ``--show-config`` prints the configuration that would run, ``--check`` runs every
check and prints the plan without training.

    ratingrl train --env dmc/cartpole-balance --algo sac --method oracle --steps 3000 --out runs/o
    ratingrl train --env dmc/walker-walk --method r4 --mode offline --dataset rated.parquet --out r
    ratingrl train --env dmc/walker-walk --method "multitask[alpha=1]" --out runs/mt
    ratingrl train --config runs/mt/config.json --set seed=1 --out runs/mt_s1
    ratingrl train --resume runs/mt
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from ratingrl.cli.common import console, fail, set_threads
from ratingrl.cli.options import field_options, parse_assignment, values_to_fields, with_options
from ratingrl.rl.config import CONFIG_VERSION, RunConfig

__all__ = ["train_command"]

_PANEL = "Run configuration (RunConfig fields)"


def train_command(
    ctx: typer.Context,
    out: Annotated[Path | None, typer.Option(help="run folder to create")] = None,
    resume: Annotated[
        Path | None, typer.Option(help="continue the run in this folder (its config is reused)")
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option("--config", help="start from this config.json (options given override it)"),
    ] = None,
    assignments: Annotated[
        list[str] | None,
        typer.Option("--set", help="KEY=VALUE for any configuration field (repeatable)"),
    ] = None,
    overwrite: Annotated[bool, typer.Option(help="replace an existing run folder")] = False,
    ratings_db: Annotated[
        str | None,
        typer.Option(
            help="online: take labels from people through the rating app's database "
            "(SQLAlchemy URL, e.g. sqlite:///ratings.db) instead of the simulated teacher: "
            "ratings, pairs for --method bt, and both with --preference-budget; the run's "
            "progress and latest evaluation clip show on the app's operator page"
        ),
    ] = None,
    ratings_project: Annotated[
        str | None, typer.Option(help="online: the app project (default: its only project)")
    ] = None,
    threads: Annotated[int, typer.Option(help="PyTorch threads")] = 1,
    progress: Annotated[bool, typer.Option(help="show progress")] = True,
    check: Annotated[
        bool,
        typer.Option(
            "--check",
            help="only check the options (env, dataset, schedule, teacher), print the plan, "
            "and exit without training or writing anything",
        ),
    ] = False,
    show_config: Annotated[
        bool, typer.Option("--show-config", help="print the configuration as JSON and exit")
    ] = False,
    **fields: Any,
) -> None:
    """Train a policy with SAC or PPO on a reward learned from ratings (or the env's reward)."""
    from ratingrl.feedback.segments import FeedbackError

    given = {k for k in fields if _from_command_line(ctx, k)}
    try:
        if resume is not None:
            if given or config is not None or assignments:
                changed = sorted(given) + (["--config"] if config else []) + (assignments or [])
                raise fail(f"--resume continues a run as it was configured; drop {changed}")
            run_config = _stored(resume)
        else:
            run_config = _resolve(config, {k: fields[k] for k in given}, assignments or [])
        if show_config:
            console.print_json(json.dumps(run_config.to_dict()))
            return
        if check:
            plan = _check(run_config, ratings_db, ratings_project, out or resume)
            console.print_json(json.dumps(plan))
            return
        if resume is None and out is None:
            raise fail("give --out RUN_DIR (or --resume RUN_DIR)")
        set_threads(threads)
        summary = _train(run_config, resume, out, overwrite, progress, ratings_db, ratings_project)
    except (FeedbackError, ValueError) as err:
        raise fail(str(err)) from None
    _report(summary, resume or out)


with_options(train_command, field_options(RunConfig, skip=("method_settings",), panel=_PANEL))


def _from_command_line(ctx: typer.Context, name: str) -> bool:
    """Whether option ``name`` was typed (not its default): only those override ``--config``.
    Compared by name, as Typer may carry its own copy of click's ``ParameterSource``."""
    source = ctx.get_parameter_source(name)
    return source is not None and source.name == "COMMANDLINE"


def _stored(run_dir: Path) -> RunConfig:
    """The configuration of the run being resumed; says so when its file is from an older
    version of ratingrl (it is read as that run ran, and the file is left as it is)."""
    path = run_dir / "config.json"
    if not path.exists():
        raise fail(f"{run_dir} is not a run folder (no config.json)")
    version = json.loads(path.read_text()).get("version", 1)
    if version < CONFIG_VERSION:
        console.print(
            f"{path}: written by an earlier ratingrl (configuration version {version}); read as "
            f"version {CONFIG_VERSION}, with the fields added since set to what that run used",
            highlight=False,
        )
    return RunConfig.load(path)


def _resolve(config: Path | None, options: dict[str, Any], assignments: list[str]) -> RunConfig:
    """Defaults, then ``--config``, then the options given, then ``--set``: the last word wins."""
    from ratingrl.rewards.methods import parse_method_spec

    base = RunConfig.load(config) if config is not None else RunConfig()
    changes = values_to_fields(RunConfig, options)
    if "method" in changes:  # --method 'multitask[alpha=1]' sets the method and its settings
        changes["method"], changes["method_settings"] = parse_method_spec(changes["method"])
    changes.update(parse_assignment(RunConfig, text) for text in assignments)
    return base.replace(**changes)


def _check(config: RunConfig, db: str | None, project: str | None, run_dir: Path | None) -> dict:
    """The plan of ``--check``; with ``--ratings-db`` the app's project is opened and matched to
    the run (the run then asks people, so the simulated teacher is neither built nor shown)."""
    from ratingrl.rl.train import check as check_run

    if not db:
        return check_run(config)
    sources = _people(config, db, project, run_dir or Path("check"))
    try:
        plan = check_run(config, sources["source"], sources.get("pair_source"))
        source = sources["source"]
        plan["people"] = {"project": source.project, "env_id": config.env_id}
        plan["people"]["repeats"] = bool(getattr(source, "repeats", False))
    finally:
        for source in sources.values():
            source.close()
    return plan


def _train(config, resume, out, overwrite, progress, ratings_db, ratings_project) -> dict:
    from ratingrl.rl.run import Run

    run_dir = resume if resume is not None else out
    sources = _people(config, ratings_db, ratings_project, run_dir) if ratings_db else {}
    if ratings_db:  # the operator page shows the run its raters teach
        from ratingrl.app.run_reporter import AppRunReporter

        sources["reporter"] = AppRunReporter(ratings_db, ratings_project, Path(run_dir).name)
    try:
        if resume is not None:
            run = Run.resume(resume, progress=progress, **sources)
        else:
            run = Run.create(config, out, overwrite=overwrite, progress=progress, **sources)
    except BaseException:
        if "reporter" in sources:  # the run never started: nothing will close it
            sources["reporter"].close()
        raise
    return run.learn()


def _people(config: RunConfig, db: str, project: str | None, run_dir: Path) -> dict:
    """The rating app as the run's sources: its comparison page for a method of pairs (bt),
    else its rating page, plus its comparison page for the pairs of ``--preference-budget``.

    Each source's tag (which queued clips and pairs are this run's) comes from the run folder,
    so a run resumed even before its first checkpoint collects what it had asked people for.
    """
    import hashlib

    from ratingrl.app.pair_source import AppPreferenceSource
    from ratingrl.app.source import AppRatingSource
    from ratingrl.rewards.methods import method_class
    from ratingrl.rl.validation import method_data_kind

    config.validate()  # the method must be known before asking what it learns from
    run = hashlib.sha256(str(Path(run_dir).resolve()).encode()).hexdigest()[:12]
    if config.method != "oracle" and method_data_kind(config.method) == "pairs":
        sources = {"source": AppPreferenceSource(db, project, tag=f"pairs-{run}")}
    else:
        repeats = config.method != "oracle" and method_class(config.method).learns_from_repeats
        ratings = AppRatingSource(db, project, tag=f"ratings-{run}", repeats=repeats)
        sources = {"source": ratings}
        if config.preference_budget > 0:
            sources["pair_source"] = AppPreferenceSource(db, project, tag=f"pairs-{run}")
    app_env = sources["source"].env_id
    if app_env != config.env_id:  # people would be shown another task's clips
        for source in sources.values():
            source.close()
        raise fail(
            f"--env {config.env_id}: the app's project {sources['source'].project!r} rates "
            f"clips of {app_env}; train on that environment or use a project made for this one"
        )
    return sources


def _report(summary: dict, run_dir: Path) -> None:
    final, best = summary["true_return_final"], summary["true_return_best"]
    learned = summary["learned_return_final"]
    console.print(
        f"true return {final['mean']:.1f} ± {final['std']:.1f} (best {best['mean']:.1f}); "
        + (f"learned {learned['mean']:.2f}; " if learned else "")
        + f"{summary['labels_used']} labels; {summary['env_steps']} steps at "
        f"{summary['env_steps_per_s'] or 0:.0f}/s; summary in {run_dir / 'summary.json'}",
        highlight=False,
    )
