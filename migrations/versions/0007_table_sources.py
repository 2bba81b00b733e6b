"""Table sources: Postgres tables whose rows are kept embedded, and the queue their triggers write.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op
from psycopg import sql
from sqlalchemy.dialects.postgresql import ARRAY, JSONB

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

NOW = sa.text("now()")


def upgrade() -> None:
    op.create_table(
        "table_sources",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.Text, nullable=False, unique=True),
        # RESTRICT: a collection is not dropped under a source whose triggers still feed it
        sa.Column("collection_id", sa.Integer, sa.ForeignKey("collections.id", ondelete="RESTRICT"), nullable=False),
        sa.Column("schema_name", sa.Text, nullable=False),
        sa.Column("table_name", sa.Text, nullable=False),
        sa.Column("key_columns", ARRAY(sa.Text), nullable=False),
        sa.Column("text_column", sa.Text),
        sa.Column("template", sa.Text),
        sa.Column("metadata_columns", ARRAY(sa.Text), nullable=False, server_default=sa.text("'{}'::text[]")),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
        sa.CheckConstraint("(text_column IS NULL) <> (template IS NULL)", name="table_sources_text_check"),
    )
    # what the triggers queue in the changing transaction: a row's key (NULL: the whole table, after a
    # TRUNCATE); the worker that drains an entry deletes it in the transaction that applies it
    op.create_table(
        "table_changes",
        sa.Column("id", sa.BigInteger, primary_key=True),
        sa.Column("source_id", sa.Integer, sa.ForeignKey("table_sources.id", ondelete="CASCADE"), nullable=False),
        sa.Column("key", JSONB),
        sa.Column("queued_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.text("clock_timestamp()")),
    )
    op.create_index("table_changes_source_idx", "table_changes", ["source_id", "id"])


def downgrade() -> None:
    # the users' tables must not keep triggers that write into a queue about to be dropped, nor views
    # on documents and chunks
    bind = op.get_bind()
    raw = bind.connection.driver_connection
    for source_id, name, schema in bind.execute(sa.text("SELECT id, name, schema_name FROM table_sources")).all():
        raw.execute(sql.SQL("DROP VIEW IF EXISTS {}").format(sql.Identifier(schema, f"{name}_embeddings")))
        function = sql.Identifier(schema, f"onnxvec_sync_{int(source_id)}")
        raw.execute(sql.SQL("DROP FUNCTION IF EXISTS {}() CASCADE").format(function))
    op.drop_table("table_changes")
    op.drop_table("table_sources")
