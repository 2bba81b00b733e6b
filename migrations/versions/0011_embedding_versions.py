"""Embedding versions: a collection's model, dims, metric, chunking and HNSW settings move into
versions; the collection points at its active one, every chunk belongs to one version, and each
version has its own partial HNSW index (chunks_hnsw_v<version id>).

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

NOW = sa.text("now()")
SETTINGS = ("model", "dims", "metric", "hnsw_m", "hnsw_ef_construction", "chunk_tokens", "chunk_overlap")
DEFAULTS = {"hnsw_m": "16", "hnsw_ef_construction": "64", "chunk_tokens": "256", "chunk_overlap": "32"}  # 0001's
OPCLASS = {"cosine": "vector_cosine_ops", "l2": "vector_l2_ops", "ip": "vector_ip_ops"}


def upgrade() -> None:
    op.create_table(
        "embedding_versions",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("collection_id", sa.Integer, sa.ForeignKey("collections.id", ondelete="CASCADE"), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("model", sa.Text, nullable=False),
        sa.Column("dims", sa.Integer, nullable=False),
        sa.Column("metric", sa.Text, nullable=False),
        sa.Column("hnsw_m", sa.Integer, nullable=False),
        sa.Column("hnsw_ef_construction", sa.Integer, nullable=False),
        sa.Column("chunk_tokens", sa.Integer, nullable=False),
        sa.Column("chunk_overlap", sa.Integer, nullable=False),
        sa.Column("state", sa.Text, nullable=False, server_default="ready"),
        sa.Column("activate_when_built", sa.Boolean, nullable=False, server_default=sa.true()),
        sa.Column("built_through", sa.BigInteger, nullable=False, server_default="0"),  # the backfill's cursor
        sa.Column("built_documents", sa.Integer, nullable=False, server_default="0"),
        sa.Column("embedded_chunks", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("reused_chunks", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
        sa.Column("progress_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
        sa.Column("built_at", sa.DateTime(timezone=True)),
        sa.Column("last_error", sa.Text),  # why a build paused itself (its model missing on a worker)
        sa.UniqueConstraint("collection_id", "version", name="embedding_versions_collection_version_key"),
        sa.CheckConstraint("state IN ('building', 'paused', 'ready')", name="embedding_versions_state_check"),
        sa.CheckConstraint("metric IN ('cosine', 'l2', 'ip')", name="embedding_versions_metric_check"),
        sa.CheckConstraint("dims BETWEEN 1 AND 16000", name="embedding_versions_dims_check"),
        sa.CheckConstraint(
            "chunk_overlap >= 0 AND chunk_overlap < chunk_tokens", name="embedding_versions_chunk_check"
        ),
    )
    columns = ", ".join(SETTINGS)
    op.execute(
        f"INSERT INTO embedding_versions (collection_id, version, {columns}, built_at)"
        f" SELECT id, 1, {columns}, created_at FROM collections"
    )
    op.add_column("collections", sa.Column("active_version_id", sa.Integer))
    op.create_foreign_key(
        "collections_active_version_fkey", "collections", "embedding_versions", ["active_version_id"], ["id"]
    )
    op.execute(
        "UPDATE collections c SET active_version_id = v.id FROM embedding_versions v WHERE v.collection_id = c.id"
    )
    op.add_column("chunks", sa.Column("version_id", sa.Integer))
    op.execute("UPDATE chunks ch SET version_id = c.active_version_id FROM collections c WHERE c.id = ch.collection_id")
    op.alter_column("chunks", "version_id", nullable=False)
    op.create_foreign_key(
        "chunks_version_fkey", "chunks", "embedding_versions", ["version_id"], ["id"], ondelete="CASCADE"
    )
    op.drop_constraint("chunks_document_ordinal_key", "chunks")
    op.create_unique_constraint(
        "chunks_version_document_ordinal_key", "chunks", ["version_id", "document_id", "ordinal"]
    )
    for collection_id, version_id, dims, metric, m, ef, _ in _versions():
        op.execute(f"DROP INDEX IF EXISTS chunks_hnsw_{collection_id}")
        _create_index(f"chunks_hnsw_v{version_id}", dims, metric, m, ef, f"version_id = {version_id}")
    for column in SETTINGS:
        op.drop_column("collections", column)


def downgrade() -> None:
    """Back to one embedding per collection: the active version's settings and chunks are kept."""
    for column in SETTINGS:
        kind = sa.Text if column in ("model", "metric") else sa.Integer
        op.add_column("collections", sa.Column(column, kind, server_default=DEFAULTS.get(column)))
    assigned = ", ".join(f"{column} = v.{column}" for column in SETTINGS)
    op.execute(f"UPDATE collections c SET {assigned} FROM embedding_versions v WHERE v.id = c.active_version_id")
    op.execute(
        "DELETE FROM chunks ch USING collections c"
        " WHERE c.id = ch.collection_id AND ch.version_id <> c.active_version_id"
    )
    for collection_id, version_id, dims, metric, m, ef, active in _versions():
        op.execute(f"DROP INDEX IF EXISTS chunks_hnsw_v{version_id}")
        if active:
            _create_index(f"chunks_hnsw_{collection_id}", dims, metric, m, ef, f"collection_id = {collection_id}")
    op.drop_constraint("chunks_version_document_ordinal_key", "chunks")
    op.create_unique_constraint("chunks_document_ordinal_key", "chunks", ["document_id", "ordinal"])
    op.drop_column("chunks", "version_id")
    op.drop_column("collections", "active_version_id")
    op.drop_table("embedding_versions")
    for column in SETTINGS:
        op.alter_column("collections", column, nullable=False)
    op.create_check_constraint("collections_metric_check", "collections", "metric IN ('cosine', 'l2', 'ip')")
    op.create_check_constraint("collections_dims_check", "collections", "dims BETWEEN 1 AND 16000")
    op.create_check_constraint(
        "collections_chunk_check", "collections", "chunk_overlap >= 0 AND chunk_overlap < chunk_tokens"
    )


def _versions() -> list[tuple]:
    """(collection id, version id, dims, metric, m, ef_construction, active) of every version."""
    return (
        op.get_bind()
        .execute(
            sa.text(
                "SELECT v.collection_id, v.id, v.dims, v.metric, v.hnsw_m, v.hnsw_ef_construction,"
                " v.id = c.active_version_id FROM embedding_versions v JOIN collections c ON c.id = v.collection_id"
            )
        )
        .all()
    )


def _create_index(name: str, dims: int, metric: str, m: int, ef: int, where: str) -> None:
    op.execute(
        f"CREATE INDEX {name} ON chunks USING hnsw ((embedding::vector({int(dims)})) {OPCLASS[metric]})"
        f" WITH (m = {int(m)}, ef_construction = {int(ef)}) WHERE {where}"
    )
