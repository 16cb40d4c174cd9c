"""People's comparisons in the rating app as a :class:`~ratingrl.feedback.preference_source.
PreferenceSource` for (online) training.

``request(pairs)`` queues comparisons on the app's pair page (tagged with this source, with an
optional priority); ``collect(timeout)`` returns the answers people have given since the last
call as :class:`~ratingrl.feedback.segments.PreferencePairs`, waiting up to ``timeout`` seconds
for at least one. ``first`` is the clip the rater saw on the left (sides are drawn at random per
rater), the label P(right preferred): 0 left, 1 right, 0.5 equally good; skips are not labels.

Each answer is handed out once: the source takes the current answers to its pairs that it has
not been handed yet and records them as handed (the ``deliveries`` table) in the same
transaction -- not an id cursor, which would skip answers that commit late on PostgreSQL. The
record is in the database and :meth:`AppPreferenceSource.state_dict` keeps the tag, so a
resumed run's source collects its pairs from where they really stopped. An answer withdrawn with
undo after it was handed out is reported by :meth:`AppPreferenceSource.retracted` (its answer
id); one withdrawn before is never handed out.
"""

from __future__ import annotations

import logging
import secrets
import time
from dataclasses import dataclass, field

import numpy as np

from ratingrl.app import store
from ratingrl.app.db import Asks
from ratingrl.app.schema import open_database
from ratingrl.feedback.preference_source import PreferenceSource, SegmentPairs
from ratingrl.feedback.segments import FeedbackError, PreferencePairs

__all__ = ["AppPreferenceSource"]


@dataclass
class AppPreferenceSource(PreferenceSource):
    """Queue pairs in the app's database and collect what raters answer on ``/pairs``.

    ``project`` names the project (None: the database's only project); it must ask its raters
    for pairs (``ratingrl app create-project --asks pairs`` or ``both``). ``poll_interval`` is how
    often the database is read while waiting in :meth:`collect`. ``wants_states`` asks the
    training loop to record simulator states, so clips replay the real robot; ``tag`` names the
    pairs this source queued (kept by :meth:`state_dict`).
    """

    db_url: str
    project: str | None = None
    poll_interval: float = 0.25
    tag: str = field(default_factory=lambda: f"pairs-{secrets.token_hex(6)}")
    wants_states: bool = True

    def __post_init__(self) -> None:
        database = open_database(self.db_url)  # an older database is upgraded first
        if database.upgrade.message:
            logging.getLogger(__name__).warning(database.upgrade.message)
        self._database = database
        with database.unit(write=False) as session:
            project = store.get_project(session, self.project)
            asks = store.project_asks(project)
            self.env_id = project.env_id  # the environment its clips are rendered from
        self.project = project.name
        if asks == Asks.RATINGS:
            database.close()
            raise FeedbackError(
                f"project {self.project!r} asks its raters for ratings only, so queued pairs "
                "would never be shown; ask for pairs (ratingrl app create-project --asks pairs "
                "or --asks both)"
            )

    def request(self, queries: SegmentPairs, priority: np.ndarray | float = 0.0) -> None:
        """Queue ``queries`` for comparison (higher ``priority`` is shown first); all or none.

        The segments' simulator states are stored with them: the clips replay those. The online
        loop records them because :attr:`wants_states` is set.
        """
        if len(queries) == 0:
            raise FeedbackError("request() needs at least one pair")
        with self._database.unit() as session:
            project = store.get_project(session, self.project)
            store.add_pairs(
                session, project, queries.first, queries.second, priority, source_tag=self.tag
            )

    def collect(self, timeout: float = 0.0) -> PreferencePairs | None:
        """Answers to this source's pairs not handed out yet, or None if none came in time."""
        deadline = time.monotonic() + max(0.0, timeout)
        while True:
            if self._waiting():
                pairs = self._take()
                if pairs is not None:
                    return pairs
            if time.monotonic() >= deadline:
                return None
            time.sleep(min(self.poll_interval, max(0.0, deadline - time.monotonic())))

    def _waiting(self) -> bool:
        """Whether answers wait for this source (one read; no write lock on SQLite)."""
        with self._database.unit(write=False) as session:
            project = store.get_project(session, self.project)
            return bool(
                store.current_pair_answers(session, project, self.tag, undelivered=True)
            )

    def _take(self) -> PreferencePairs | None:
        """The answers waiting for this source, recorded as delivered when the unit commits."""
        with self._database.unit() as session:
            project = store.get_project(session, self.project)
            rows = store.current_pair_answers(session, project, self.tag, undelivered=True)
            if not rows:  # read again: one may have been undone since
                return None
            ids = [r.id for r in rows]
            store.record_pair_deliveries(session, self.tag, store.PAIR_DELIVERY, ids)
            answered = store.answered_pairs(session, rows)
            names = store.rater_names(session, project)
        source = {
            "kind": "app",
            "project": self.project,
            "source_tag": self.tag,
            "first": "the clip shown on the left",
        }
        return store.preference_pairs(answered, source, names)

    def retracted(self) -> list[str]:
        """Answer ids (as strings) withdrawn since they were handed out, each reported once."""
        with self._database.unit(write=False) as session:
            project = store.get_project(session, self.project)
            if not store.withdrawn_pair_answers(session, project, unreported_to=self.tag):
                return []
        with self._database.unit() as session:
            project = store.get_project(session, self.project)
            undone = store.withdrawn_pair_answers(session, project, unreported_to=self.tag)
            undos = [undo for undo, _ in undone]
            store.record_pair_deliveries(session, self.tag, store.PAIR_UNDO_DELIVERY, undos)
        return [str(answer) for _, answer in undone]

    def state_dict(self) -> dict:
        """The tag: a resumed run's source collects the answers to the pairs this one queued."""
        return {"tag": self.tag}

    def load_state_dict(self, state: dict) -> None:
        """Continue as the source that saved ``state`` (what it was handed is in the database)."""
        if state.get("tag"):
            self.tag = str(state["tag"])

    def close(self) -> None:
        self._database.close()
