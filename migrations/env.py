"""Alembic environment: runs on the connection onnxvec.infra.db hands over, or on the configured URL."""

from alembic import context
from sqlalchemy import create_engine

from onnxvec.config import Settings
from onnxvec.infra.embedded import start_postgres

config = context.config


def _run(connection) -> None:
    context.configure(connection=connection, transaction_per_migration=True)
    with context.begin_transaction():
        context.run_migrations()


connection = config.attributes.get("connection")
if connection is not None:
    _run(connection)
else:
    settings = Settings()
    with create_engine(settings.database_url or start_postgres(settings)).connect() as conn:
        _run(conn)
        conn.commit()
