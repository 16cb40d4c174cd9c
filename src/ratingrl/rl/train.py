"""``train(config, run_dir)``: one call from a configuration to a trained policy.

A thin wrapper over :class:`~ratingrl.rl.run.Run` for scripts that want a summary and nothing
else; use :class:`~ratingrl.rl.run.Run` directly to replace a part (the feedback source, the
reward updater) or to look at the run while it trains.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

from ratingrl.feedback.sources import FeedbackSource
from ratingrl.rl import builders
from ratingrl.rl.config import RunConfig
from ratingrl.rl.run import Run
from ratingrl.rl.validation import RunError

__all__ = ["RunConfig", "RunError", "check", "train"]


def train(
    config: RunConfig,
    run_dir: str | Path,
    *,
    resume: bool = False,
    overwrite: bool = False,
    source: FeedbackSource | None = None,
    pair_source: FeedbackSource | None = None,
    progress: bool = True,
) -> dict:
    """Train a policy as ``config`` says, in ``run_dir``; returns (and writes) the summary.

    ``resume`` continues the run in ``run_dir`` from its last checkpoint, keeping every label
    (``config`` must be the one it was started with). ``overwrite`` replaces an existing run
    folder. ``source`` replaces the simulated teacher of online runs (e.g. the rating app's),
    ``pair_source`` the one answering the pairs of ``preference_budget``.
    """
    sources = {"source": source, "pair_source": pair_source, "progress": progress}
    if resume:
        run = Run.resume(run_dir, config=config, **sources)
    else:
        run = Run.create(config, run_dir, overwrite=overwrite, **sources)
    return run.learn()


def check(
    config: RunConfig,
    source: FeedbackSource | None = None,
    pair_source: FeedbackSource | None = None,
) -> dict:
    """Every check :meth:`~ratingrl.rl.run.Run.create` makes before it touches a run folder,
    and the plan they lead to.

    For a sweep this catches a typo or a schedule that does not fit before hours of compute:
    the environment is built once (its shapes), offline datasets are read and matched to it,
    and an online run's schedule and simulated teacher are constructed. With ``source`` and
    ``pair_source`` (people through the rating app, say), as :func:`train` takes them, the run
    never builds the simulated teacher, so neither does the check: the plan names the source.
    """
    inputs = builders.run_inputs(config, source, pair_source)
    plan: dict = {"env_id": config.env_id, "obs_dim": inputs.dims[0], "act_dim": inputs.dims[1]}
    if config.method != "oracle":
        method = (
            builders.make_online_method(config) if config.online else builders.make_method(config)
        )
        plan["method"] = asdict(method)
    if config.online:
        assert inputs.schedule is not None
        plan["schedule"] = inputs.schedule.to_dict()
        if source is None:
            plan["teacher"] = builders.make_teacher_source(config).teacher.to_dict()
        else:
            plan["source"] = {"kind": source.kind, "class": type(source).__name__}
    return plan
