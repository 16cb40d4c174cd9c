"""What each training source has been handed: ``deliveries`` (source tag, kind, row id).

The training source used to read new rows with an id cursor, which skips rows on PostgreSQL:
ids are drawn when a row is inserted, not when its transaction commits, so a smaller id can
commit after a larger one was read. A source now takes exactly the rows without a delivery under
its tag and records them in the same transaction. Nothing existing changes.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "deliveries",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("source_tag", sa.String(length=200), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("row_id", sa.Integer(), nullable=False),
        sa.Column("delivered_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("source_tag", "kind", "row_id"),
    )


def downgrade() -> None:
    op.drop_table("deliveries")
