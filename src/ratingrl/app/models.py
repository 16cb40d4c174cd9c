"""The rating app's tables, as SQLAlchemy models (the engine and units of work are in ``db``).

Five tables: projects, segments (the clips), raters (hashed tokens), queue items (which rater is
shown which clip, including hidden repeats) and an append-only ratings table. Ratings are never
updated or deleted: a skip, an undo and a new rating after an undo are each a new row, so the
history a rater produced is always there and export picks, per queue item, the latest row.
Comparisons have four tables of their own, kept apart so the rating queue never shows a pair's
clip: pair segments, pairs (what training asked), pair items (a pair shown to one rater) and the
append-only pair answers, whose rows follow the same rules as ratings. ``deliveries`` records
which rows each training source has been handed (see :class:`Delivery`). The rating queue keeps
its bookkeeping in two more, so that picking a clip never counts: ``clip_slots`` (each queued
clip's places taken, :class:`ClipSlot`) and ``queue_counters`` (open clips per project).

Statuses are :class:`ItemStatus` / :class:`RatingStatus` members, stored as the plain strings
(``"rated"``...) the tables have always held. The schema is created and upgraded by the Alembic
migrations in ``app/migrations``, never by ``create_all`` on a real database. Everything here is
re-exported by :mod:`ratingrl.app.db`, where the app has always imported it from.
"""

from __future__ import annotations

import time
from enum import Enum

from sqlalchemy import (
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy import Enum as SAEnum
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

__all__ = [
    "Base",
    "ItemStatus",
    "RatingStatus",
    "Asks",
    "PairChoice",
    "Project",
    "SegmentRow",
    "Rater",
    "QueueItem",
    "RatingRow",
    "ClipSlot",
    "QueueCounter",
    "PairSegmentRow",
    "PairRow",
    "PairItem",
    "PairAnswerRow",
    "Delivery",
    "RunRow",
    "RunEventRow",
]


class ItemStatus(str, Enum):
    """Where a queue item stands: a hidden repeat waits (pending), then it is shown, answered."""

    PENDING = "pending"
    SHOWN = "shown"
    RATED = "rated"
    SKIPPED = "skipped"

    def __str__(self) -> str:
        return self.value


class RatingStatus(str, Enum):
    """What one row of the append-only ratings table records."""

    RATED = "rated"
    SKIPPED = "skipped"
    UNDONE = "undone"

    def __str__(self) -> str:
        return self.value


class Asks(str, Enum):
    """What a project asks its raters for: ratings of single clips, comparisons, or both."""

    RATINGS = "ratings"
    PAIRS = "pairs"
    BOTH = "both"

    def __str__(self) -> str:
        return self.value


class PairChoice(str, Enum):
    """A rater's answer to a comparison, as shown on screen: left, right or equally good."""

    LEFT = "left"
    RIGHT = "right"
    EQUAL = "equal"

    def __str__(self) -> str:
        return self.value


def _status_column(enum: type[Enum]) -> SAEnum:
    """A VARCHAR(16) holding the member's *value*, as the tables held bare strings before."""
    return SAEnum(
        enum,
        native_enum=False,
        create_constraint=False,
        length=16,
        values_callable=lambda members: [m.value for m in members],
        validate_strings=True,
    )


class Base(DeclarativeBase):
    pass


def _now() -> float:
    return time.time()


class Project(Base):
    """An environment, a rating scale and how clips are shown and shared between raters."""

    __tablename__ = "projects"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    env_id: Mapped[str] = mapped_column(String(200))
    scale_names: Mapped[str] = mapped_column(Text)  # JSON list; its length is the scale's n
    clip_length: Mapped[int] = mapped_column(Integer)
    fps: Mapped[int] = mapped_column(Integer, default=25)
    width: Mapped[int] = mapped_column(Integer, default=240)
    height: Mapped[int] = mapped_column(Integer, default=240)
    ratings_per_clip: Mapped[int] = mapped_column(Integer, default=1)
    repeat_every: Mapped[int] = mapped_column(Integer, default=10)
    instructions: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[float] = mapped_column(Float, default=_now)
    asks: Mapped[Asks] = mapped_column(
        _status_column(Asks), default=Asks.RATINGS, server_default=Asks.RATINGS.value
    )


class SegmentRow(Base):
    """One clip: the segment's arrays (``.npy`` bytes) and, when known, MuJoCo states to replay.

    ``reference_level`` is set for the example clip shown for one level of the scale; reference
    clips are never queued for rating. A queued clip has a :class:`ClipSlot` row.
    """

    __tablename__ = "segments"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    public_id: Mapped[str] = mapped_column(String(32), unique=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id"), index=True)
    obs: Mapped[bytes] = mapped_column(LargeBinary)
    acts: Mapped[bytes] = mapped_column(LargeBinary)
    true_rewards: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    states: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    episode_id: Mapped[int] = mapped_column(Integer, default=-1)
    start: Mapped[int] = mapped_column(Integer, default=0)
    priority: Mapped[float] = mapped_column(Float, default=0.0)
    source_tag: Mapped[str | None] = mapped_column(String(200), nullable=True)
    reference_level: Mapped[int | None] = mapped_column(Integer, nullable=True)
    created_at: Mapped[float] = mapped_column(Float, default=_now)

    __table_args__ = (Index("ix_segments_queue", "project_id", "priority", "id"),)


class Rater(Base):
    """A person with a token; only ``sha256(token)`` is stored."""

    __tablename__ = "raters"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[float] = mapped_column(Float, default=_now)

    __table_args__ = (UniqueConstraint("project_id", "name"),)


class QueueItem(Base):
    """One clip shown (or to be shown) to one rater; ``public_id`` is the API's ``clip_id``.

    The public id is random and per rater, so a hidden repeat looks like any other clip and one
    rater cannot address another rater's items. ``status``: pending (a repeat waiting for
    ``due_after`` ratings), shown, rated or skipped. The unique constraint makes two concurrent
    requests for the next clip of one rater resolve to a single item. ``lease_until`` is set
    while a first-time item that is shown holds one of its clip's ``ratings_per_clip`` places
    (counted in its :class:`ClipSlot`'s ``lease_count``); an answer or the lease's end gives the
    place back.
    """

    __tablename__ = "queue_items"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    public_id: Mapped[str] = mapped_column(String(32), unique=True)
    rater_id: Mapped[int] = mapped_column(ForeignKey("raters.id"), index=True)
    segment_id: Mapped[int] = mapped_column(ForeignKey("segments.id"), index=True)
    is_repeat: Mapped[bool] = mapped_column(Boolean, default=False)
    status: Mapped[ItemStatus] = mapped_column(
        _status_column(ItemStatus), default=ItemStatus.SHOWN
    )
    due_after: Mapped[int] = mapped_column(Integer, default=0)
    shown_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    created_at: Mapped[float] = mapped_column(Float, default=_now)
    lease_until: Mapped[float | None] = mapped_column(Float, nullable=True, index=True)

    __table_args__ = (
        UniqueConstraint("rater_id", "segment_id", "is_repeat"),
        Index("ix_items_rater_status", "rater_id", "status"),
    )


class RatingRow(Base):
    """Append-only: one row per rating, skip or undo (``status`` rated / skipped / undone)."""

    __tablename__ = "ratings"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id"), index=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("queue_items.id"), index=True)
    rater_id: Mapped[int] = mapped_column(ForeignKey("raters.id"), index=True)
    segment_id: Mapped[int] = mapped_column(ForeignKey("segments.id"), index=True)
    value: Mapped[int | None] = mapped_column(Integer, nullable=True)
    scale_n: Mapped[int] = mapped_column(Integer)
    status: Mapped[RatingStatus] = mapped_column(_status_column(RatingStatus))
    is_repeat: Mapped[bool] = mapped_column(Boolean, default=False)
    shown_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    answered_at: Mapped[float] = mapped_column(Float, default=_now)
    undoes_id: Mapped[int | None] = mapped_column(ForeignKey("ratings.id"), nullable=True)


class ClipSlot(Base):
    """A queued clip's places, kept current in the transaction of each lease, answer and undo.

    ``rated_count`` (first-time items rated) and ``lease_count`` (first-time items shown whose
    lease runs) take the clip's ``ratings_per_clip`` places; ``is_open`` says one is left. With
    the clip's priority in the same narrow row, picking a rater's next clip is a range scan of
    ``ix_clip_slots_open`` rather than a count over every clip, and a lease or an answer rewrites
    a few numbers, not the clip's arrays. Reference examples have no slot row.
    """

    __tablename__ = "clip_slots"
    segment_id: Mapped[int] = mapped_column(ForeignKey("segments.id"), primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id"))
    priority: Mapped[float] = mapped_column(Float)
    rated_count: Mapped[int] = mapped_column(Integer, default=0)
    lease_count: Mapped[int] = mapped_column(Integer, default=0)
    is_open: Mapped[bool] = mapped_column(Boolean, default=True)

    __table_args__ = (
        Index("ix_clip_slots_open", "project_id", "is_open", text("priority DESC"), "segment_id"),
    )


class QueueCounter(Base):
    """How many of a project's clips are open (:class:`ClipSlot`): the sum over its shards.

    Changed by +-1 when a clip opens or closes, in the same transaction; the change goes to the
    shard of the rater who caused it, so concurrent raters on PostgreSQL rarely wait on one row.
    """

    __tablename__ = "queue_counters"
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id"), primary_key=True)
    shard: Mapped[int] = mapped_column(Integer, primary_key=True)
    open_clips: Mapped[int] = mapped_column(Integer, default=0)


class PairSegmentRow(Base):
    """One clip of a comparison (arrays as in :class:`SegmentRow`); never in the rating queue."""

    __tablename__ = "pair_segments"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    public_id: Mapped[str] = mapped_column(String(32), unique=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id"), index=True)
    obs: Mapped[bytes] = mapped_column(LargeBinary)
    acts: Mapped[bytes] = mapped_column(LargeBinary)
    true_rewards: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    states: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    episode_id: Mapped[int] = mapped_column(Integer, default=-1)
    start: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[float] = mapped_column(Float, default=_now)


class PairRow(Base):
    """A comparison asked for (``first`` against ``second``), with its priority and asker."""

    __tablename__ = "pairs"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id"))
    first_id: Mapped[int] = mapped_column(ForeignKey("pair_segments.id"))
    second_id: Mapped[int] = mapped_column(ForeignKey("pair_segments.id"))
    priority: Mapped[float] = mapped_column(Float, default=0.0)
    source_tag: Mapped[str | None] = mapped_column(String(200), nullable=True, index=True)
    created_at: Mapped[float] = mapped_column(Float, default=_now)

    __table_args__ = (Index("ix_pairs_queue", "project_id", "priority", "id"),)


class PairItem(Base):
    """One pair shown to one rater; ``public_id`` is the API's ``pair_id``.

    ``swapped``: the pair's second segment is on the left (sides are drawn at random, so a
    rater's habit of favouring one side does not become a preference for ``first``). The
    unique constraint shows a rater each pair at most once.
    """

    __tablename__ = "pair_items"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    public_id: Mapped[str] = mapped_column(String(32), unique=True)
    rater_id: Mapped[int] = mapped_column(ForeignKey("raters.id"))
    pair_id: Mapped[int] = mapped_column(ForeignKey("pairs.id"), index=True)
    swapped: Mapped[bool] = mapped_column(Boolean, default=False)
    status: Mapped[ItemStatus] = mapped_column(
        _status_column(ItemStatus), default=ItemStatus.SHOWN
    )
    shown_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    created_at: Mapped[float] = mapped_column(Float, default=_now)

    __table_args__ = (
        UniqueConstraint("rater_id", "pair_id"),
        Index("ix_pair_items_rater_status", "rater_id", "status"),
    )


class PairAnswerRow(Base):
    """Append-only: one row per answer, skip or undo of a pair item (like :class:`RatingRow`).

    ``choice`` is the side the rater preferred as they saw it (null for skips and undos).
    """

    __tablename__ = "pair_answers"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id"), index=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("pair_items.id"), index=True)
    pair_id: Mapped[int] = mapped_column(ForeignKey("pairs.id"), index=True)
    rater_id: Mapped[int] = mapped_column(ForeignKey("raters.id"), index=True)
    choice: Mapped[PairChoice | None] = mapped_column(_status_column(PairChoice), nullable=True)
    status: Mapped[RatingStatus] = mapped_column(_status_column(RatingStatus))
    shown_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    answered_at: Mapped[float] = mapped_column(Float, default=_now)
    undoes_id: Mapped[int | None] = mapped_column(ForeignKey("pair_answers.id"), nullable=True)


class Delivery(Base):
    """A row handed to a training source (by its ``source_tag``), recorded as it is handed over.

    ``kind`` names the table ``row_id`` points into: ``"rating"`` (a ratings row returned by
    ``collect``), ``"undo"`` (an undo row reported by ``retracted``), and ``"pair"`` /
    ``"pair-undo"`` (pair answers and their undos, for the preference source). A source hands
    out the rows that have no delivery under its tag yet, in the transaction that records them.
    So a row that commits late is still handed out, once -- on PostgreSQL ids are drawn at
    insert, not at commit, so a smaller id can commit after a larger one was read, and an id
    cursor skips it -- and a resumed run's source (same tag) goes on from what was really handed
    out.
    """

    __tablename__ = "deliveries"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    source_tag: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(16))
    row_id: Mapped[int] = mapped_column(Integer)
    delivered_at: Mapped[float] = mapped_column(Float, default=_now)

    __table_args__ = (UniqueConstraint("source_tag", "kind", "row_id"),)


class RunRow(Base):
    """A training run learning from a project's raters (``ratingrl train --ratings-db``).

    ``run_key`` names the run across resumes (its folder); ``public_id`` is the API's run id.
    ``status``: running, finished or stopped; ``updated_at`` is its latest report. The latest
    evaluation clip's arrays (``clip_*``, ``.npy`` bytes; states when the env has them) are
    replaced at each evaluation and served under ``clip_id``, random and new for every clip.
    """

    __tablename__ = "runs"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    public_id: Mapped[str] = mapped_column(String(32), unique=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id"), index=True)
    run_key: Mapped[str] = mapped_column(String(500))
    name: Mapped[str] = mapped_column(String(200))
    env_id: Mapped[str] = mapped_column(String(200))
    config: Mapped[str] = mapped_column(Text)  # JSON: the run's configuration
    status: Mapped[str] = mapped_column(String(16))
    env_steps: Mapped[int] = mapped_column(Integer, default=0)
    started_at: Mapped[float] = mapped_column(Float, default=_now)
    updated_at: Mapped[float] = mapped_column(Float, default=_now)
    clip_id: Mapped[str | None] = mapped_column(String(32), nullable=True, unique=True)
    clip_env_steps: Mapped[int | None] = mapped_column(Integer, nullable=True)
    clip_obs: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    clip_acts: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    clip_states: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)

    __table_args__ = (UniqueConstraint("project_id", "run_key"),)


class RunEventRow(Base):
    """One report of a run: ``kind`` labels, update or evaluation, its numbers as JSON."""

    __tablename__ = "run_events"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id"))
    kind: Mapped[str] = mapped_column(String(16))
    env_steps: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[float] = mapped_column(Float, default=_now)
    data: Mapped[str] = mapped_column(Text)

    __table_args__ = (Index("ix_run_events_run", "run_id", "kind", "id"),)
