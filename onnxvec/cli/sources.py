"""`onnxvec sources`: Postgres tables kept embedded, row by row, as they change."""

from __future__ import annotations

import json
import time
from typing import Annotated

import typer

from onnxvec.cli.common import app, database, fail
from onnxvec.config import get_settings
from onnxvec.infra import broker, embedded
from onnxvec.ingest import sync
from onnxvec.storage import table_sources

sources_app = typer.Typer(no_args_is_help=True, help="Postgres tables kept embedded as their rows change.")
app.add_typer(sources_app, name="sources")


def _names(value: str | None) -> tuple[str, ...]:
    return tuple(part.strip() for part in (value or "").split(",") if part.strip())


@sources_app.command("add")
def sources_add(
    name: Annotated[str, typer.Argument(help="the source's name (its documents' ids start with NAME:)")],
    table: Annotated[str, typer.Option(help="[schema.]table (quote a name holding a dot: '\"my.table\"')")],
    collection: Annotated[str, typer.Option(help="collection to embed into (created if new)")],
    text_column: Annotated[str | None, typer.Option(help="the column holding the text")] = None,
    template: Annotated[str | None, typer.Option(help="the text from columns, e.g. '{title}\\n\\n{body}'")] = None,
    metadata_columns: Annotated[str | None, typer.Option(help="comma-separated columns kept as metadata")] = None,
    id_column: Annotated[
        str | None, typer.Option(help="comma-separated key columns (default: the primary key)")
    ] = None,
    model: Annotated[str | None, typer.Option(help="embedding model, for a new collection")] = None,
    wait: Annotated[bool, typer.Option(help="return when every existing row is embedded")] = False,
    timeout: Annotated[float | None, typer.Option(help="with --wait: give up after this many seconds")] = None,
) -> None:
    """Install the table's triggers, queue its existing rows (the backfill) and wake the workers."""
    settings = get_settings()
    engine = database(settings)
    if template is not None:
        template = template.replace("\\n", "\n")  # as typed in a shell
    with engine.begin() as conn:
        source, rows = sync.add_source(
            conn,
            settings,
            name,
            table,
            collection,
            text_column=text_column,
            template=template,
            metadata_columns=_names(metadata_columns),
            key_columns=_names(id_column),
            model=model,
        )
    broker.make_app(settings, embedded.ensure_services(settings).redis_url).send_task(broker.SYNC_TASK)
    typer.echo(
        f"{source.name}: {source.spec.label} → {collection}, key ({', '.join(source.key_columns)}), {rows} rows queued"
    )
    if wait:
        _wait(engine, source.name, timeout)


def _wait(engine, name: str, timeout: float | None) -> None:
    """Until nothing of the source is queued or pending, with a line every few seconds."""
    started = time.monotonic()
    while True:
        shown = _status(engine, name)
        states = shown["documents"]
        unfinished = shown["queued"] + states.get("pending", 0) + states.get("processing", 0)
        rate = states.get("done", 0) / max(time.monotonic() - started, 1e-6)
        typer.echo(f"{name}: {shown['queued']} rows queued, {states} ({rate:.0f} rows/s)", err=True)
        if not unfinished:
            if states.get("failed"):
                raise fail(f"{states['failed']} rows failed; see `onnxvec status --failed`")
            return
        if timeout is not None and time.monotonic() - started > timeout:
            raise fail(f"{unfinished} rows still unfinished after {timeout:.0f} s")
        time.sleep(2)


def _status(engine, name: str) -> dict:
    with engine.connect() as conn:
        return sync.status(conn, table_sources.get(conn, name))


@sources_app.command("list")
def sources_list(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    engine = database(get_settings())
    with engine.connect() as conn:
        names = [source.name for source in table_sources.list_sources(conn)]
    shown = [_status(engine, name) for name in names]
    if as_json:
        typer.echo(json.dumps(shown))
        return
    for row in shown:
        typer.echo(f"{row['id']:<20} {row['table']:<30} → {row['collection']:<20} {row['queued']} queued")


@sources_app.command("status")
def sources_status(name: str) -> None:
    """Queued rows, the age of the oldest (lag), documents by state, and the sync mode."""
    typer.echo(json.dumps(_status(database(get_settings()), name), indent=2))


@sources_app.command("rm")
def sources_rm(
    name: str,
    drop_embeddings: Annotated[bool, typer.Option(help="also delete the source's documents and chunks")] = False,
) -> None:
    """Remove the table's triggers and the source (the table itself is not touched)."""
    with database(get_settings()).begin() as conn:
        dropped = sync.remove_source(conn, name, drop_embeddings=drop_embeddings)
    typer.echo(f"removed {name}" + (f" and its {dropped} documents" if drop_embeddings else ""))
