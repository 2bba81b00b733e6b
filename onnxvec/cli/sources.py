"""`onnxvec sources`: Postgres tables kept embedded, row by row, as they change."""

from __future__ import annotations

import json
import time
from typing import Annotated

import typer
from tqdm import tqdm

from onnxvec.cli.common import PLAIN_PROGRESS_SECONDS, app, database, fail, on_terminal
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
    database_url: Annotated[
        str | None, typer.Option(help="the Postgres the table is in (default: onnxvec's own database)")
    ] = None,
    poll: Annotated[
        str | None,
        typer.Option(help="no triggers: poll this changed-at timestamp column (a replica, a table you do not own)"),
    ] = None,
    wait: Annotated[bool, typer.Option(help="return when every existing row is embedded")] = False,
    timeout: Annotated[float | None, typer.Option(help="with --wait: give up after this many seconds")] = None,
) -> None:
    """Install the table's triggers and queue its existing rows (the backfill), or with --poll install
    nothing and let the workers read every row; then wake the workers."""
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
            database_url=database_url,
            poll_column=poll,
        )
    broker.make_app(settings, embedded.ensure_services(settings).redis_url).send_task(broker.SYNC_TASK)
    typer.echo(
        f"{source.name}: {source.spec.label} → {collection}, key ({', '.join(source.key_columns)}), "
        f"{source.mode}, {rows} rows to read"
    )
    if wait:
        _wait(engine, source.name, rows, timeout)


def _wait(engine, name: str, rows: int, timeout: float | None) -> None:
    """Until nothing of the source is queued or unfinished: a bar with rows/s and ETA on a terminal,
    a line every PLAIN_PROGRESS_SECONDS elsewhere."""
    terminal = on_terminal()
    bar = tqdm(total=rows, unit="rows", desc=name, disable=not terminal)
    started = printed = time.monotonic()
    first: int | None = None
    try:
        while True:
            shown = _status(engine, name)
            states, queued = shown["documents"], shown["queued"]
            finished = states["done"] + states["failed"]
            first = finished if first is None else first
            unfinished = (queued or 0) + states["pending"] + states["processing"]
            elapsed = time.monotonic() - started
            rate = (finished - first) / max(elapsed, 1e-6)
            bar.total, bar.n = max(rows, finished + unfinished), finished
            bar.set_postfix(failed=states["failed"], refresh=False)
            bar.refresh()
            eta = f"{unfinished / rate:.0f} s" if rate > 0 else "?"
            line = f"{name}: {finished}/{finished + unfinished} rows, {rate:.0f} rows/s, ETA {eta}"
            if queued is None:
                line = f"{name}: {shown.get('error')}"
            if not terminal and (time.monotonic() - printed >= PLAIN_PROGRESS_SECONDS or not unfinished):
                printed = time.monotonic()
                typer.echo(line, err=True)
            if queued is not None and not unfinished:
                break
            if timeout is not None and elapsed > timeout:
                raise fail(f"{unfinished} rows still unfinished after {timeout:.0f} s")
            time.sleep(1)
    finally:
        bar.close()
    if states["failed"]:
        raise fail(f"{states['failed']} rows failed; see `onnxvec status --failed`, then `onnxvec retry`")


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
        typer.echo(
            f"{row['id']:<20} {row['table']:<30} → {row['collection']:<20} {row['mode']:<8} {row['queued']} queued"
        )


@sources_app.command("status")
def sources_status(name: str) -> None:
    """Queued rows, the age of the oldest (lag), documents by state, and the sync mode."""
    typer.echo(json.dumps(_status(database(get_settings()), name), indent=2))


@sources_app.command("rm")
def sources_rm(
    name: str,
    drop_embeddings: Annotated[bool, typer.Option(help="also delete the source's documents and chunks")] = False,
    force: Annotated[
        bool, typer.Option(help="remove it even if its other database cannot be reached (its triggers stay there)")
    ] = False,
) -> None:
    """Remove the table's triggers and the source (the table itself is not touched)."""
    with database(get_settings()).begin() as conn:
        dropped = sync.remove_source(conn, name, drop_embeddings=drop_embeddings, force=force)
    typer.echo(f"removed {name}" + (f" and its {dropped} documents" if drop_embeddings else ""))
