"""Collections, documents and chunks.

Chunks of every collection share one table with an untyped ``vector`` column; each collection gets
its own partial HNSW index on ``embedding::vector(dims)`` with the opclass of its metric, created by
onnxvec.storage.store when the collection is created (and dropped with it).

Revision ID: 0001
Revises:
Create Date: 2026-11-22
"""

import sqlalchemy as sa
from alembic import op
from pgvector.sqlalchemy import Vector
from sqlalchemy.dialects.postgresql import JSONB

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

NOW = sa.text("now()")


def upgrade() -> None:
    op.execute("CREATE EXTENSION IF NOT EXISTS vector")
    op.create_table(
        "collections",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.Text, nullable=False, unique=True),
        sa.Column("model", sa.Text, nullable=False),
        sa.Column("dims", sa.Integer, nullable=False),
        sa.Column("metric", sa.Text, nullable=False),
        sa.Column("hnsw_m", sa.Integer, nullable=False, server_default="16"),
        sa.Column("hnsw_ef_construction", sa.Integer, nullable=False, server_default="64"),
        sa.Column("chunk_tokens", sa.Integer, nullable=False, server_default="256"),
        sa.Column("chunk_overlap", sa.Integer, nullable=False, server_default="32"),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
        sa.CheckConstraint("metric IN ('cosine', 'l2', 'ip')", name="collections_metric_check"),
        sa.CheckConstraint("dims BETWEEN 1 AND 16000", name="collections_dims_check"),
        sa.CheckConstraint("chunk_overlap >= 0 AND chunk_overlap < chunk_tokens", name="collections_chunk_check"),
    )
    op.create_table(
        "documents",
        sa.Column("id", sa.BigInteger, primary_key=True),
        sa.Column("collection_id", sa.Integer, sa.ForeignKey("collections.id", ondelete="CASCADE"), nullable=False),
        sa.Column("external_id", sa.Text, nullable=False),
        sa.Column("source", sa.Text),
        sa.Column("content_hash", sa.Text),
        sa.Column("metadata", JSONB, nullable=False, server_default=sa.text("'{}'::jsonb")),
        sa.Column("state", sa.Text, nullable=False, server_default="pending"),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("last_error", sa.Text),
        sa.Column("lease_until", sa.DateTime(timezone=True)),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
        sa.UniqueConstraint("collection_id", "external_id", name="documents_collection_external_key"),
        sa.CheckConstraint("state IN ('pending', 'processing', 'done', 'failed')", name="documents_state_check"),
    )
    op.create_index("documents_state_idx", "documents", ["collection_id", "state"])
    op.create_index("documents_metadata_idx", "documents", ["metadata"], postgresql_using="gin")
    op.create_table(
        "chunks",
        sa.Column("id", sa.BigInteger, primary_key=True),
        sa.Column("collection_id", sa.Integer, sa.ForeignKey("collections.id", ondelete="CASCADE"), nullable=False),
        sa.Column("document_id", sa.BigInteger, sa.ForeignKey("documents.id", ondelete="CASCADE"), nullable=False),
        sa.Column("ordinal", sa.Integer, nullable=False),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("content_hash", sa.Text, nullable=False),
        sa.Column("token_count", sa.Integer, nullable=False),
        sa.Column("embedding", Vector(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
        sa.UniqueConstraint("document_id", "ordinal", name="chunks_document_ordinal_key"),
    )
    op.create_index("chunks_collection_idx", "chunks", ["collection_id"])


def downgrade() -> None:
    op.drop_table("chunks")
    op.drop_table("documents")
    op.drop_table("collections")
