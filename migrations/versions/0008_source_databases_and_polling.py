"""Table sources in another database, and sources kept by polling a changed-at column instead of triggers.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # NULL: the table is in onnxvec's own database
    op.add_column("table_sources", sa.Column("database_url", sa.Text))
    # set: no triggers; the worker reads rows whose poll_column passed poll_cursor ([value, key] as jsonb)
    op.add_column("table_sources", sa.Column("poll_column", sa.Text))
    op.add_column("table_sources", sa.Column("poll_cursor", JSONB))
    op.add_column("table_sources", sa.Column("full_pass_at", sa.DateTime(timezone=True)))


def downgrade() -> None:
    # 0007 knows only sources in onnxvec's own database kept by triggers; the others must be removed with
    # `onnxvec sources rm` first (which drops their triggers in the other database)
    others = (
        op.get_bind()
        .execute(
            sa.text(
                "SELECT string_agg(name, ', ') FROM table_sources"
                " WHERE database_url IS NOT NULL OR poll_column IS NOT NULL"
            )
        )
        .scalar_one()
    )
    if others:
        raise RuntimeError(f"remove these sources with `onnxvec sources rm` before downgrading: {others}")
    for column in ("full_pass_at", "poll_cursor", "poll_column", "database_url"):
        op.drop_column("table_sources", column)
