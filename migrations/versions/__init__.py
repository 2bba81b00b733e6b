"""The revisions, applied in order by Alembic."""
