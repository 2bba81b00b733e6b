"""The section of a document a chunk starts in (its trail of headings), shown with search hits.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("chunks", sa.Column("section", sa.Text))  # NULL: text before any heading, or not chunked at one


def downgrade() -> None:
    op.drop_column("chunks", "section")
