"""The rating queue reads an index instead of counting: clip slots, leases, open clips.

Before, picking a rater's next clip counted, for every clip of the project, the items rated or
shown within their lease: its cost grew with the number of clips. Now each queued clip has a
``clip_slots`` row (its priority, ``rated_count``, ``lease_count`` and ``is_open``, indexed for
the pick), each first-time item that is shown carries ``lease_until``, and ``queue_counters``
holds how many clips each project still has open. The queue keeps them current in the
transaction of each answer, lease and undo; this revision computes them for the rows there.

A shown item gets the lease it had: ``shown_at`` plus the 600 s the queue gave then. A lease
that has run out is given back by the next request for a clip, as any other.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

LEASE_S = 600.0  # the queue's SHOWN_LEASE_S when this revision was written

_projects = sa.table("projects", sa.column("id"), sa.column("ratings_per_clip"))
_segments = sa.table(
    "segments",
    sa.column("id"),
    sa.column("project_id"),
    sa.column("priority"),
    sa.column("reference_level"),
)
_items = sa.table(
    "queue_items",
    sa.column("id"),
    sa.column("segment_id"),
    sa.column("is_repeat", sa.Boolean()),
    sa.column("status"),
    sa.column("shown_at"),
    sa.column("lease_until"),
)
_slots = sa.table(
    "clip_slots",
    sa.column("segment_id"),
    sa.column("project_id"),
    sa.column("priority"),
    sa.column("rated_count"),
    sa.column("lease_count"),
    sa.column("is_open", sa.Boolean()),
)
_counters = sa.table(
    "queue_counters", sa.column("project_id"), sa.column("shard"), sa.column("open_clips")
)


def upgrade() -> None:
    op.add_column("queue_items", sa.Column("lease_until", sa.Float(), nullable=True))
    op.create_table(
        "clip_slots",
        sa.Column("segment_id", sa.Integer(), nullable=False),
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("priority", sa.Float(), nullable=False),
        sa.Column("rated_count", sa.Integer(), nullable=False),
        sa.Column("lease_count", sa.Integer(), nullable=False),
        sa.Column("is_open", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(["project_id"], ["projects.id"]),
        sa.ForeignKeyConstraint(["segment_id"], ["segments.id"]),
        sa.PrimaryKeyConstraint("segment_id"),
    )
    op.create_table(
        "queue_counters",
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("shard", sa.Integer(), nullable=False),
        sa.Column("open_clips", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["project_id"], ["projects.id"]),
        sa.PrimaryKeyConstraint("project_id", "shard"),
    )
    _backfill()
    op.create_index(
        "ix_clip_slots_open",
        "clip_slots",
        ["project_id", "is_open", sa.text("priority DESC"), "segment_id"],
    )
    op.create_index("ix_queue_items_lease_until", "queue_items", ["lease_until"])


def _backfill() -> None:
    """The slots and counters of the rows already there, as the queue would have kept them."""
    first_time = _items.c.is_repeat.is_(False)
    op.execute(
        _items.update()
        .where(first_time, _items.c.status == "shown", _items.c.shown_at.is_not(None))
        .values(lease_until=_items.c.shown_at + LEASE_S)
    )
    mine = _items.c.segment_id == _segments.c.id
    rated = sa.select(sa.func.count()).where(mine, first_time, _items.c.status == "rated")
    leased = sa.select(sa.func.count()).where(mine, _items.c.lease_until.is_not(None))
    queued = sa.select(
        _segments.c.id,
        _segments.c.project_id,
        _segments.c.priority,
        rated.scalar_subquery(),
        leased.scalar_subquery(),
        sa.false(),
    ).where(_segments.c.reference_level.is_(None))
    columns = ["segment_id", "project_id", "priority", "rated_count", "lease_count", "is_open"]
    op.execute(_slots.insert().from_select(columns, queued))
    per_clip = (
        sa.select(_projects.c.ratings_per_clip)
        .where(_projects.c.id == _slots.c.project_id)
        .scalar_subquery()
    )
    op.execute(
        _slots.update().values(is_open=_slots.c.rated_count + _slots.c.lease_count < per_clip)
    )
    open_per_project = (
        sa.select(_slots.c.project_id, sa.literal(0), sa.func.count())
        .where(_slots.c.is_open.is_(True))
        .group_by(_slots.c.project_id)
    )
    op.execute(
        _counters.insert().from_select(["project_id", "shard", "open_clips"], open_per_project)
    )


def downgrade() -> None:
    op.drop_index("ix_queue_items_lease_until", table_name="queue_items")
    op.drop_table("queue_counters")
    op.drop_table("clip_slots")
    op.drop_column("queue_items", "lease_until")  # SQLite >= 3.35 drops a column in place
