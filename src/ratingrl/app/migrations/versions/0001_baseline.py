"""Baseline: the five tables as ``create_all`` made them before the app had migrations.

A database made by an older ratingrl (tables present, no ``alembic_version``) is checked
against this schema and stamped with this revision instead of running it.

Revision ID: 0001
Revises: (none)
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    _projects()
    _segments()
    _raters()
    _queue_items()
    _ratings()


def _projects() -> None:
    op.create_table(
        "projects",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("env_id", sa.String(length=200), nullable=False),
        sa.Column("scale_names", sa.Text(), nullable=False),
        sa.Column("clip_length", sa.Integer(), nullable=False),
        sa.Column("fps", sa.Integer(), nullable=False),
        sa.Column("width", sa.Integer(), nullable=False),
        sa.Column("height", sa.Integer(), nullable=False),
        sa.Column("ratings_per_clip", sa.Integer(), nullable=False),
        sa.Column("repeat_every", sa.Integer(), nullable=False),
        sa.Column("instructions", sa.Text(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name"),
    )


def _segments() -> None:
    op.create_table(
        "segments",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("public_id", sa.String(length=32), nullable=False),
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("obs", sa.LargeBinary(), nullable=False),
        sa.Column("acts", sa.LargeBinary(), nullable=False),
        sa.Column("true_rewards", sa.LargeBinary(), nullable=True),
        sa.Column("states", sa.LargeBinary(), nullable=True),
        sa.Column("episode_id", sa.Integer(), nullable=False),
        sa.Column("start", sa.Integer(), nullable=False),
        sa.Column("priority", sa.Float(), nullable=False),
        sa.Column("source_tag", sa.String(length=200), nullable=True),
        sa.Column("reference_level", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(["project_id"], ["projects.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("public_id"),
    )
    op.create_index("ix_segments_project_id", "segments", ["project_id"])
    op.create_index("ix_segments_queue", "segments", ["project_id", "priority", "id"])


def _raters() -> None:
    op.create_table(
        "raters",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(["project_id"], ["projects.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("project_id", "name"),
        sa.UniqueConstraint("token_hash"),
    )
    op.create_index("ix_raters_project_id", "raters", ["project_id"])


def _queue_items() -> None:
    op.create_table(
        "queue_items",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("public_id", sa.String(length=32), nullable=False),
        sa.Column("rater_id", sa.Integer(), nullable=False),
        sa.Column("segment_id", sa.Integer(), nullable=False),
        sa.Column("is_repeat", sa.Boolean(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("due_after", sa.Integer(), nullable=False),
        sa.Column("shown_at", sa.Float(), nullable=True),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(["rater_id"], ["raters.id"]),
        sa.ForeignKeyConstraint(["segment_id"], ["segments.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("rater_id", "segment_id", "is_repeat"),
        sa.UniqueConstraint("public_id"),
    )
    op.create_index("ix_queue_items_rater_id", "queue_items", ["rater_id"])
    op.create_index("ix_queue_items_segment_id", "queue_items", ["segment_id"])
    op.create_index("ix_items_rater_status", "queue_items", ["rater_id", "status"])


def _ratings() -> None:
    op.create_table(
        "ratings",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("item_id", sa.Integer(), nullable=False),
        sa.Column("rater_id", sa.Integer(), nullable=False),
        sa.Column("segment_id", sa.Integer(), nullable=False),
        sa.Column("value", sa.Integer(), nullable=True),
        sa.Column("scale_n", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("is_repeat", sa.Boolean(), nullable=False),
        sa.Column("shown_at", sa.Float(), nullable=True),
        sa.Column("answered_at", sa.Float(), nullable=False),
        sa.Column("undoes_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(["project_id"], ["projects.id"]),
        sa.ForeignKeyConstraint(["item_id"], ["queue_items.id"]),
        sa.ForeignKeyConstraint(["rater_id"], ["raters.id"]),
        sa.ForeignKeyConstraint(["segment_id"], ["segments.id"]),
        sa.ForeignKeyConstraint(["undoes_id"], ["ratings.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_ratings_item_id", "ratings", ["item_id"])
    op.create_index("ix_ratings_project_id", "ratings", ["project_id"])
    op.create_index("ix_ratings_rater_id", "ratings", ["rater_id"])
    op.create_index("ix_ratings_segment_id", "ratings", ["segment_id"])


def downgrade() -> None:
    for table in ("ratings", "queue_items", "raters", "segments", "projects"):
        op.drop_table(table)
