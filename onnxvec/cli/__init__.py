"""The `onnxvec` command: one module per command group, each adding its commands to the app in
onnxvec/cli/common.py."""

from __future__ import annotations

import sys

import typer
from alembic.util import CommandError
from redis.exceptions import RedisError
from sqlalchemy.exc import OperationalError

from onnxvec.cli import (  # noqa: F401  (they add the commands)
    collections,
    documents,
    imports,
    ingest,
    keys,
    models,
    search,
    serve,
    services,
    sources,
    versions,
)
from onnxvec.cli.common import app
from onnxvec.errors import OnnxvecError


def main() -> None:
    """The console script: errors a user can act on end in one line and exit 1, never a traceback."""
    try:
        app()
    except (OnnxvecError, CommandError, FileNotFoundError, TimeoutError) as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(1)
    except (OperationalError, RedisError) as exc:  # unreachable: the driver's first line says why
        what = "the database" if isinstance(exc, OperationalError) else "Redis"
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        typer.echo(f"error: cannot reach {what}: {reason}", err=True)
        sys.exit(1)
