"""Metadata paths a collection hides from search results and filters (e.g. "owner.email").

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import ARRAY

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "collections",
        sa.Column("hidden_metadata", ARRAY(sa.Text), nullable=False, server_default=sa.text("'{}'::text[]")),
    )


def downgrade() -> None:
    op.drop_column("collections", "hidden_metadata")
