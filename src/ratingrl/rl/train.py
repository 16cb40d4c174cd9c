"""``train(config, run_dir)``: one call from a configuration to a trained policy.

A thin wrapper over :class:`~ratingrl.rl.run.Run` for scripts that want a summary and nothing
else; use :class:`~ratingrl.rl.run.Run` directly to replace a part (the feedback source, the
reward updater) or to look at the run while it trains.
"""

from __future__ import annotations

from pathlib import Path

from ratingrl.feedback.sources import FeedbackSource
from ratingrl.rl.config import RunConfig
from ratingrl.rl.run import Run, check
from ratingrl.rl.validation import RunError

__all__ = ["RunConfig", "RunError", "check", "train"]


def train(
    config: RunConfig,
    run_dir: str | Path,
    *,
    resume: bool = False,
    overwrite: bool = False,
    source: FeedbackSource | None = None,
    progress: bool = True,
) -> dict:
    """Train a policy as ``config`` says, in ``run_dir``; returns (and writes) the summary.

    ``resume`` continues the run in ``run_dir`` from its last checkpoint, keeping every label
    (``config`` must be the one it was started with). ``overwrite`` replaces an existing run
    folder. ``source`` replaces the simulated teacher of online runs (e.g. the rating app's).
    """
    if resume:
        run = Run.resume(run_dir, config=config, source=source, progress=progress)
    else:
        run = Run.create(config, run_dir, source=source, overwrite=overwrite, progress=progress)
    return run.learn()
