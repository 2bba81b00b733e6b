"""Full-text search: a text search configuration per collection and a tsvector per chunk (GIN-indexed).

The configuration (``english`` unless a collection is created with another) stems the chunks when they
are written (onnxvec/storage/chunks.py) and the queries when they are searched; chunks written before
this revision are filled here.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import TSVECTOR

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("collections", sa.Column("language", sa.Text, nullable=False, server_default="english"))
    op.add_column("chunks", sa.Column("tsv", TSVECTOR))
    op.execute(
        "UPDATE chunks c SET tsv = to_tsvector(CAST(l.language AS regconfig), c.text)"
        " FROM collections l WHERE l.id = c.collection_id"
    )
    op.alter_column("chunks", "tsv", nullable=False)
    # built after the fill: one bulk build instead of an index update per row
    op.create_index("chunks_tsv_idx", "chunks", ["tsv"], postgresql_using="gin")


def downgrade() -> None:
    op.drop_index("chunks_tsv_idx", "chunks")
    op.drop_column("chunks", "tsv")
    op.drop_column("collections", "language")
