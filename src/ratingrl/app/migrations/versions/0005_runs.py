"""Runs that learn from a project's raters report their progress: ``runs`` and ``run_events``.

``ratingrl train --ratings-db`` writes a row per run (its configuration, status, latest step
and the arrays of its latest evaluation clip) and an event per report (labels per round, reward
updates, evaluations); the operator page draws them. Nothing existing changes.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "runs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("public_id", sa.String(length=32), nullable=False),
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("run_key", sa.String(length=500), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("env_id", sa.String(length=200), nullable=False),
        sa.Column("config", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("env_steps", sa.Integer(), nullable=False),
        sa.Column("started_at", sa.Float(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.Column("clip_id", sa.String(length=32), nullable=True),
        sa.Column("clip_env_steps", sa.Integer(), nullable=True),
        sa.Column("clip_obs", sa.LargeBinary(), nullable=True),
        sa.Column("clip_acts", sa.LargeBinary(), nullable=True),
        sa.Column("clip_states", sa.LargeBinary(), nullable=True),
        sa.ForeignKeyConstraint(["project_id"], ["projects.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("project_id", "run_key"),
        sa.UniqueConstraint("public_id"),
        sa.UniqueConstraint("clip_id"),
    )
    op.create_index("ix_runs_project_id", "runs", ["project_id"])
    op.create_table(
        "run_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("env_steps", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("data", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_run_events_run", "run_events", ["run_id", "kind", "id"])


def downgrade() -> None:
    op.drop_table("run_events")
    op.drop_table("runs")
