"""The rating app as a :class:`~ratingrl.feedback.sources.RatingSource` for (online) training.

``request(segments)`` publishes segments to the app's queue (tagged with this source, with an
optional priority from the query selector); ``collect(timeout)`` returns the ratings people have
given since the last call, waiting up to ``timeout`` seconds for at least one -- with
``timeout=0`` the training loop keeps training while people rate.

Each rating is returned once, named by its rating id (``RatedSegments.label_id``): the source
takes the current ratings of its clips that it has not been handed yet and records them as
handed (the ``deliveries`` table) in the same transaction. Not an id cursor: ids need not commit
in order (on PostgreSQL a rating holding id 7 can commit after one holding id 8 was collected),
and a cursor would skip the late one for good. The record is in the database, so a source
resumed for a run (same tag, restored by :meth:`AppRatingSource.load_state_dict`) goes on from
what was really handed out, also after its last checkpoint.

A rating withdrawn with undo *after* it was collected is reported by
:meth:`AppRatingSource.retracted`, and the training loop drops it from the run; one withdrawn
before it was collected is never returned (only current ratings are). A changed rating (undo,
then rate again) is a new rating with a new id. Hidden repeats are not returned (they measure
raters, they are not new labels) unless ``repeats`` is set: a model of each rater (method
``raters``) weighs raters by how they agree with themselves on them.

Polls only read (no write lock on SQLite); a second, writing unit of work takes what the read
found, when it found something.
"""

from __future__ import annotations

import logging
import secrets
import time
from dataclasses import dataclass, field

import numpy as np

from ratingrl.app import store
from ratingrl.app.db import unit_of_work
from ratingrl.app.schema import open_database
from ratingrl.feedback.segments import FeedbackError, RatedSegments, RatingScale, SegmentSet
from ratingrl.feedback.sources import RatingSource

__all__ = ["AppRatingSource"]


@dataclass
class AppRatingSource(RatingSource):
    """Queue segments in the app's database and collect what raters answer.

    ``project`` names the project (None: the database's only project). ``poll_interval`` is how
    often the database is read while waiting in :meth:`collect`. ``wants_states`` asks the
    training loop to record simulator states, so clips of live queries replay the real robot
    (DeepMind Control observations do not determine the pose; without states a clip is a bar
    chart); False saves the per-step cost of recording them. ``repeats`` also hands over the
    ratings of hidden repeats, as labels of the same segment by the same rater.
    """

    db_url: str
    project: str | None = None
    poll_interval: float = 0.25
    tag: str = field(default_factory=lambda: f"source-{secrets.token_hex(6)}")
    wants_states: bool = True
    repeats: bool = False

    def __post_init__(self) -> None:
        database = open_database(self.db_url)  # an older database is upgraded first
        if database.upgrade.message:
            logging.getLogger(__name__).warning(database.upgrade.message)
        self._engine, self._sessions = database.engine, database.sessions
        with unit_of_work(self._sessions) as session:
            project = store.get_project(session, self.project)
            self._project_id = project.id
            self.project = project.name
            self.env_id = project.env_id  # the environment its clips are rendered from
            self._scale = store.project_scale(project)

    @property
    def scale(self) -> RatingScale:
        return self._scale

    def request(
        self,
        segments: SegmentSet,
        priority: np.ndarray | float = 0.0,
        states: np.ndarray | None = None,
    ) -> None:
        """Publish ``segments`` to the rating queue (higher ``priority`` is shown first).

        Their simulator states (``states``, else ``segments.states``) are stored with them: the
        clips replay those. The online loop records them because :attr:`wants_states` is set.
        """
        if len(segments) == 0:
            raise FeedbackError("request() needs at least one segment")
        with unit_of_work(self._sessions) as session:  # all segments are queued, or none
            project = store.get_project(session, self.project)
            store.add_segments(session, project, segments, priority, states, source_tag=self.tag)

    def collect(self, timeout: float = 0.0) -> RatedSegments | None:
        """Ratings given to this source's segments since the last call, or None if none came."""
        deadline = time.monotonic() + max(0.0, timeout)
        while True:
            if self._pending_ratings():
                rated = self._take_ratings()
                if rated is not None:
                    return rated
            if time.monotonic() >= deadline:
                return None
            time.sleep(min(self.poll_interval, max(0.0, deadline - time.monotonic())))

    def _pending_ratings(self) -> bool:
        """Whether ratings wait for this source (one read, no write lock)."""
        with unit_of_work(self._sessions, write=False) as session:
            project = store.get_project(session, self.project)
            waiting = store.effective_ratings(
                session, project, self.repeats, source_tag=self.tag, undelivered=True
            )
        return bool(waiting)

    def _take_ratings(self) -> RatedSegments | None:
        """The ratings waiting for this source, recorded as delivered when the unit commits."""
        with unit_of_work(self._sessions) as session:
            project = store.get_project(session, self.project)
            rows = store.effective_ratings(
                session, project, self.repeats, source_tag=self.tag, undelivered=True
            )  # again: one may have been undone since the read
            if not rows:
                return None
            store.record_deliveries(session, self.tag, store.RATING_DELIVERY, [r.id for r in rows])
            segments = store.segments_by_id(session, [r.segment_id for r in rows])
            names = store.rater_names(session, project)
        return RatedSegments(
            segments,
            np.array([r.value for r in rows]),
            self._scale,
            {
                "kind": "app",
                "project": self.project,
                "source_tag": self.tag,
                "rated_at": [r.answered_at for r in rows],
            },
            np.array([names[r.rater_id] for r in rows], dtype=object),
            np.array([str(r.id) for r in rows], dtype=object),
        )

    def retracted(self) -> list[str]:
        """Ids of ratings withdrawn (undone) since the last call, each reported once.

        Project-wide, not only this source's clips, and from the first undo on: a source made
        to resume a crashed run with a new tag (the run crashed before its first checkpoint)
        still reports undos of ratings the crashed run had collected. Ids the run never held
        (undone before they were collected, another run's) are ignored by the training loop.
        """
        with unit_of_work(self._sessions, write=False) as session:
            project = store.get_project(session, self.project)
            if not store.undone_ratings(session, project, self.tag, self.repeats):
                return []
        with unit_of_work(self._sessions) as session:
            project = store.get_project(session, self.project)
            undone = store.undone_ratings(session, project, self.tag, self.repeats)
            store.record_deliveries(session, self.tag, store.UNDO_DELIVERY, [u for u, _ in undone])
        return [str(rating_id) for _, rating_id in undone]

    def state_dict(self) -> dict:
        """The tag: a resumed run's source collects the ratings of the clips this one queued."""
        return {"tag": self.tag}

    def load_state_dict(self, state: dict) -> None:
        """Continue as the source that saved ``state`` (what it was handed is in the database)."""
        if state.get("tag"):
            self.tag = str(state["tag"])

    def close(self) -> None:
        self._engine.dispose()
