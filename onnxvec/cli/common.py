"""What every command shares: the `onnxvec` Typer app, the settings check, one-line failures and
the database engine with its schema up to date."""

from __future__ import annotations

import os
import shutil
import sys
from typing import NoReturn

import typer
from pydantic import ValidationError
from sqlalchemy import Engine

from onnxvec.config import Settings, get_settings
from onnxvec.infra import db, embedded

app = typer.Typer(
    no_args_is_help=True,
    help="onnxvec: embeddings, vector search and RAG chat over PostgreSQL.",
    pretty_exceptions_enable=False,
)


@app.callback()
def _settings_are_valid() -> None:
    """Check the environment's settings before any command runs, one clear line per bad value."""
    try:
        get_settings()
    except ValidationError as exc:
        for error in exc.errors():
            typer.echo(f"error: ONNXVEC_{str(error['loc'][0]).upper()}: {error['msg']}", err=True)
        raise typer.Exit(2) from exc


def become(shell: str, args: list[str]) -> NoReturn:
    """Replace this process with `python -m SHELL ARGS` (api/ or worker/): the core never imports its
    shells, and signals reach the server or worker itself."""
    os.execv(sys.executable, [sys.executable, "-m", shell, *args])


def fail(message: str) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(1)


def pairs(values: list[str] | None, what: str) -> dict[str, str]:
    """`key=value` options (--meta, --filter) as a dict; anything else is a one-line error."""
    found = {}
    for item in values or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise fail(f"{what} must look like key=value, not {item!r}")
        found[key] = value
    return found


def database(settings: Settings) -> Engine:
    """A database engine on the configured or embedded Postgres, schema brought up to date."""
    engine = db.make_engine(embedded.ensure_services(settings).database_url)
    db.upgrade(engine)
    return engine


PLAIN_PROGRESS_SECONDS = 10  # where no bar can be seen (CI, a pipe), a progress line this often


def on_terminal() -> bool:
    """Whether a progress bar can be seen: stderr is a terminal with a width."""
    return sys.stderr.isatty() and shutil.get_terminal_size((0, 0)).columns > 0
