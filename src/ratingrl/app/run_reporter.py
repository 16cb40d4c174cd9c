"""A training run's progress, written to the rating app's database for the operator page.

:class:`AppRunReporter` has the methods of :class:`ratingrl.rl.reporting.RunReporter` (the app
does not import the rl package: the run calls whatever it is given). ``ratingrl train
--ratings-db`` hands one to the run, which calls it on a worker thread of its own, so a slow or
failing database never holds up training. Each call is one short unit of work.

The evaluation clip is the first ``clip_frames`` steps of one evaluation episode, stored as
arrays (and simulator states where the env has them); the server renders it like a rating
clip when the operator page asks for it, so rendering never runs in the training process.
"""

from __future__ import annotations

import logging
from typing import Any

from ratingrl.app import store
from ratingrl.app.models import RunRow
from ratingrl.app.schema import open_database
from ratingrl.feedback.rollouts import Episode

__all__ = ["AppRunReporter", "CLIP_FRAMES"]

CLIP_FRAMES = 200
"""Steps of an evaluation episode shown as the run's clip (8 s at 25 frames per second)."""


class AppRunReporter:
    """Writes a run's reports to the app database at ``db_url``, under ``project`` (None: the
    database's only project); ``name`` is how the operator page names the run."""

    def __init__(
        self,
        db_url: str,
        project: str | None = None,
        name: str = "",
        clip_frames: int = CLIP_FRAMES,
    ) -> None:
        if clip_frames < 1:
            raise ValueError(f"clip_frames must be >= 1, got {clip_frames}")
        self.project, self.name, self.clip_frames = project, name, clip_frames
        self._database = open_database(db_url)
        if self._database.upgrade.message:
            logging.getLogger(__name__).warning(self._database.upgrade.message)
        with self._database.unit(write=False) as session:  # an unknown project fails here
            self.project = store.get_project(session, project).name
        self._run_id: int | None = None

    @property
    def run_id(self) -> str | None:
        """The run's id in the app's API (None before :meth:`on_start`)."""
        if self._run_id is None:
            return None
        with self._database.unit(write=False) as session:
            run = session.get(RunRow, self._run_id)
            return None if run is None else run.public_id

    def _id(self) -> int:
        if self._run_id is None:
            raise RuntimeError("the run was not registered with the app (on_start failed)")
        return self._run_id

    def on_start(self, key: str, config: dict[str, Any], env_steps: int) -> None:
        """Register the run (or continue its row after a resume)."""
        with self._database.unit() as session:
            project = store.get_project(session, self.project)
            name = self.name or key
            run = store.start_run(session, project, key, name, config, env_steps)
            self._run_id = run.id

    def on_labels(self, env_steps: int, requested: list[int], labels: int) -> None:
        """Rounds asked (the labels requested in each) and labels stored now."""
        data = {"rounds": len(requested), "requested": list(requested), "labels": labels}
        self._event("labels", env_steps, data)

    def on_update(self, env_steps: int, labels: int, row: dict[str, Any]) -> None:
        """A reward update: its labels and numbers (numbers only; the loss among them)."""
        numbers = {k: v for k, v in row.items() if isinstance(v, (int, float))}
        self._event("update", env_steps, {"labels": labels, **numbers})

    def on_evaluation(self, result: dict[str, Any], episode: Episode | None) -> None:
        """An evaluation's returns; its episode's first ``clip_frames`` steps become the clip."""
        steps = int(result["env_steps"])
        keep = ("true_return", "learned_return", "episode_length")
        with self._database.unit() as session:
            store.add_run_event(
                session, self._id(), "evaluation", steps, {k: result.get(k) for k in keep}
            )
            if episode is not None:
                n = min(self.clip_frames, episode.length)
                states = None if episode.states is None else episode.states[:n]
                store.set_run_clip(
                    session, self._id(), steps, episode.obs[:n], episode.acts[:n], states
                )

    def on_finish(self, status: str) -> None:
        with self._database.unit() as session:
            store.finish_run(session, self._id(), status)

    def _event(self, kind: str, env_steps: int, data: dict) -> None:
        with self._database.unit() as session:
            store.add_run_event(session, self._id(), kind, env_steps, data)

    def close(self) -> None:
        self._database.close()
