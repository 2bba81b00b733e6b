"""Document content and queue bookkeeping for the ingestion worker.

``content`` keeps the extracted text in Postgres, the source of truth, so a worker needs no access to
the files and a re-run needs nothing from Redis. ``lease_owner`` names the worker process holding a
claim; ``enqueued_at`` lets the reconciler tell queued work from work a flushed Redis lost.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("documents", sa.Column("content", sa.Text))
    op.add_column("documents", sa.Column("lease_owner", sa.Text))
    op.add_column("documents", sa.Column("enqueued_at", sa.DateTime(timezone=True)))
    op.create_index("chunks_document_idx", "chunks", ["document_id"])
    op.create_index(
        "documents_unfinished_idx",
        "documents",
        ["state", "enqueued_at"],
        postgresql_where=sa.text("state IN ('pending', 'processing')"),
    )


def downgrade() -> None:
    op.drop_index("documents_unfinished_idx", "documents")
    op.drop_index("chunks_document_idx", "chunks")
    op.drop_column("documents", "enqueued_at")
    op.drop_column("documents", "lease_owner")
    op.drop_column("documents", "content")
