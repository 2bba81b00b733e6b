"""API keys scoped to collections: a key with a list sees and searches only those collections.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import ARRAY

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("api_keys", sa.Column("collections", ARRAY(sa.Text)))  # NULL: every collection


def downgrade() -> None:
    op.drop_column("api_keys", "collections")
