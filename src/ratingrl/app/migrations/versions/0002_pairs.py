"""Pairs from people: what a project asks for (``projects.asks``) and the comparison tables.

Existing projects keep asking for ratings only (the column's server default), so an upgraded
database behaves exactly as before until the operator asks for pairs.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # plain ALTER TABLE (no batch copy): SQLite adds a column with a default in place
    op.add_column(
        "projects",
        sa.Column("asks", sa.String(length=16), nullable=False, server_default="ratings"),
    )
    _pair_segments()
    _pairs()
    _pair_items()
    _pair_answers()


def _pair_segments() -> None:
    op.create_table(
        "pair_segments",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("public_id", sa.String(length=32), nullable=False),
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("obs", sa.LargeBinary(), nullable=False),
        sa.Column("acts", sa.LargeBinary(), nullable=False),
        sa.Column("true_rewards", sa.LargeBinary(), nullable=True),
        sa.Column("states", sa.LargeBinary(), nullable=True),
        sa.Column("episode_id", sa.Integer(), nullable=False),
        sa.Column("start", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(["project_id"], ["projects.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("public_id"),
    )
    op.create_index("ix_pair_segments_project_id", "pair_segments", ["project_id"])


def _pairs() -> None:
    op.create_table(
        "pairs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("first_id", sa.Integer(), nullable=False),
        sa.Column("second_id", sa.Integer(), nullable=False),
        sa.Column("priority", sa.Float(), nullable=False),
        sa.Column("source_tag", sa.String(length=200), nullable=True),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(["project_id"], ["projects.id"]),
        sa.ForeignKeyConstraint(["first_id"], ["pair_segments.id"]),
        sa.ForeignKeyConstraint(["second_id"], ["pair_segments.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_pairs_queue", "pairs", ["project_id", "priority", "id"])
    op.create_index("ix_pairs_source_tag", "pairs", ["source_tag"])


def _pair_items() -> None:
    op.create_table(
        "pair_items",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("public_id", sa.String(length=32), nullable=False),
        sa.Column("rater_id", sa.Integer(), nullable=False),
        sa.Column("pair_id", sa.Integer(), nullable=False),
        sa.Column("swapped", sa.Boolean(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("shown_at", sa.Float(), nullable=True),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(["rater_id"], ["raters.id"]),
        sa.ForeignKeyConstraint(["pair_id"], ["pairs.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("rater_id", "pair_id"),
        sa.UniqueConstraint("public_id"),
    )
    op.create_index("ix_pair_items_pair_id", "pair_items", ["pair_id"])
    op.create_index("ix_pair_items_rater_status", "pair_items", ["rater_id", "status"])


def _pair_answers() -> None:
    op.create_table(
        "pair_answers",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("item_id", sa.Integer(), nullable=False),
        sa.Column("pair_id", sa.Integer(), nullable=False),
        sa.Column("rater_id", sa.Integer(), nullable=False),
        sa.Column("choice", sa.String(length=16), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("shown_at", sa.Float(), nullable=True),
        sa.Column("answered_at", sa.Float(), nullable=False),
        sa.Column("undoes_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(["project_id"], ["projects.id"]),
        sa.ForeignKeyConstraint(["item_id"], ["pair_items.id"]),
        sa.ForeignKeyConstraint(["pair_id"], ["pairs.id"]),
        sa.ForeignKeyConstraint(["rater_id"], ["raters.id"]),
        sa.ForeignKeyConstraint(["undoes_id"], ["pair_answers.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    for column in ("item_id", "pair_id", "project_id", "rater_id"):
        op.create_index(f"ix_pair_answers_{column}", "pair_answers", [column])


def downgrade() -> None:
    for table in ("pair_answers", "pair_items", "pairs", "pair_segments"):
        op.drop_table(table)
    op.drop_column("projects", "asks")  # SQLite >= 3.35 drops a column in place
