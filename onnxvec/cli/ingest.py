"""`onnxvec ingest | worker | status | retry`: the ingestion side of the command line."""

from __future__ import annotations

import json
import sys
import time
from typing import Annotated

import typer
from tqdm import tqdm

from onnxvec.cli.common import PLAIN_PROGRESS_SECONDS, app, become, database, on_terminal, pairs
from onnxvec.config import get_settings
from onnxvec.infra import broker, embedded
from onnxvec.ingest import register, sync
from onnxvec.sources.files import LoadOptions
from onnxvec.storage import collections, documents, stats


@app.command("ingest")
def ingest_command(
    paths: Annotated[list[str], typer.Argument(help="files, folders (recursive), globs, or - for stdin")],
    collection: Annotated[str, typer.Option(help="collection to ingest into (created if new)")],
    metric: Annotated[str | None, typer.Option(help="cosine|l2|ip, for a new collection")] = None,
    model: Annotated[str | None, typer.Option(help="embedding model, for a new collection")] = None,
    meta: Annotated[list[str] | None, typer.Option(help="metadata key=value for every document")] = None,
    wait: Annotated[bool, typer.Option(help="return when all are embedded; exit 1 if any failed")] = False,
    prune: Annotated[bool, typer.Option(help="delete documents whose source file is gone")] = False,
    id_field: Annotated[str, typer.Option(help="JSON/CSV record id field")] = "id",
    text_field: Annotated[str, typer.Option(help="JSON/CSV record text field")] = "text",
    metadata_field: Annotated[list[str] | None, typer.Option(help="JSON/CSV fields kept as metadata")] = None,
    stdin_format: Annotated[str, typer.Option(help="txt|md|html|jsonl|json|csv for -")] = "txt",
    timeout: Annotated[float | None, typer.Option(help="with --wait: give up after this many seconds")] = None,
) -> None:
    """Register documents in Postgres and hand them to the workers."""
    settings = get_settings()
    options = LoadOptions(
        id_field=id_field,
        text_field=text_field,
        metadata_fields=tuple(metadata_field) if metadata_field else None,
        max_bytes=settings.max_document_bytes,
        extra_metadata=pairs(meta, "--meta"),
    )
    endpoints = embedded.ensure_services(settings)
    engine = database(settings)
    stdin = sys.stdin.buffer.read() if "-" in paths else None
    report = register.ingest(
        settings,
        engine,
        broker.make_app(settings, endpoints.redis_url),
        paths,
        collection,
        model=model,
        metric=metric,
        options=options,
        stdin=stdin,
        stdin_kind=f".{stdin_format}",
        prune=prune,
    )
    typer.echo(
        f"{report.collection}: {report.files} files, {report.documents} documents: {len(report.queued)} queued, "
        f"{report.unchanged} unchanged, {report.failed_to_load} failed to load, {report.pruned} pruned"
    )
    for path in report.unsupported:
        typer.echo(f"unsupported file type, not ingested: {path}", err=True)
    if not wait:
        return
    with engine.connect() as conn:
        col = collections.get_collection(conn, collection)
    counts = _wait_with_progress(engine, col, report.queued, timeout, report.failed_to_load)
    failed = counts["documents"]["failed"] + report.failed_to_load
    if failed:
        typer.echo(f"{failed} documents failed; see `onnxvec status --failed --collection {collection}`", err=True)
        raise typer.Exit(1)


def _wait_with_progress(
    engine, col: collections.Collection, ids: list[int], timeout: float | None, failed_to_load: int
) -> dict:
    """Progress by text bytes (an ETA by documents was off 2x on a real corpus); a bar on a terminal,
    plain lines every PLAIN_PROGRESS_SECONDS elsewhere (CI, a pipe), where a bar shows nothing."""
    terminal = on_terminal()
    bar = tqdm(total=0, unit="B", unit_scale=True, desc="embedded", disable=not ids or not terminal)
    first: dict = {}
    started = time.monotonic()
    shown = {"at": started}

    def show(counts: dict) -> None:
        states, sizes = counts["documents"], counts["text_bytes"]
        first.setdefault("chunks", counts["chunks"])
        elapsed = max(time.monotonic() - started, 1e-6)
        rate = (counts["chunks"] - first["chunks"]) / elapsed
        bar.total, bar.n = sum(sizes.values()), sizes["done"] + sizes["failed"]
        errors = states["failed"] + failed_to_load
        bar.set_postfix(
            docs=f"{states['done'] + states['failed']}/{len(ids)}",
            chunks_per_s=f"{rate:.0f}",
            errors=errors,
            refresh=False,
        )
        bar.refresh()
        if not terminal and ids and time.monotonic() - shown["at"] >= PLAIN_PROGRESS_SECONDS:
            shown["at"] = time.monotonic()
            typer.echo(_progress_line(states, sizes, len(ids), rate, errors, elapsed), err=True)

    try:
        counts = register.wait(engine, col, ids, show, timeout=timeout)
    finally:
        bar.close()
    if not terminal and ids:
        elapsed = time.monotonic() - started
        rate = (counts["chunks"] - first["chunks"]) / max(elapsed, 1e-6)
        errors = counts["documents"]["failed"] + failed_to_load
        typer.echo(_progress_line(counts["documents"], counts["text_bytes"], len(ids), rate, errors, elapsed), err=True)
    return counts


def _progress_line(states: dict, sizes: dict, documents: int, rate: float, errors: int, elapsed: float) -> str:
    total, done = sum(sizes.values()), sizes["done"] + sizes["failed"]
    eta = f"{(total - done) * elapsed / done:.0f} s" if done else "?"
    return (
        f"embedded {states['done'] + states['failed']}/{documents} documents, {done / 1e6:.1f}/{total / 1e6:.1f} MB "
        f"of text ({100 * done / max(total, 1):.0f}%), {rate:.0f} chunks/s, {errors} errors, ETA {eta}"
    )


@app.command("worker")
def worker_command(
    concurrency: Annotated[int | None, typer.Option(help="worker processes (default: settings, else 1)")] = None,
    beat: Annotated[bool, typer.Option(help="also run the periodic reconciler")] = True,
    loglevel: Annotated[str, typer.Option()] = "info",
) -> None:
    """A Celery worker on the Redis broker; processes × ONNX threads never exceed the cores."""
    options = ["--concurrency", str(concurrency)] if concurrency else []
    become("worker", [*options, "--beat" if beat else "--no-beat", "--loglevel", loglevel])


@app.command("status")
def status_command(
    collection: Annotated[str | None, typer.Option()] = None,
    failed: Annotated[bool, typer.Option("--failed", help="list failed documents with their errors")] = False,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Documents by state, chunks, queue depth, failures and recent throughput."""
    settings = get_settings()
    endpoints = embedded.ensure_services(settings)
    with database(settings).connect() as conn:
        col = collections.get_collection(conn, collection) if collection else None
        counts = stats.counts(conn, col)
        claims = stats.claims(conn)
        failures = stats.failures(conn, col) if failed else []
    counts["queue_depth"] = broker.queue_depth(endpoints.redis_url)
    counts["stalled"] = register.stall(counts, claims, counts["queue_depth"], settings.reconcile_seconds)
    counts["docs_per_s_last_minute"] = round(counts.pop("done_last_minute") / 60, 2)
    if as_json:
        typer.echo(json.dumps(counts | ({"failed": failures} if failed else {}), default=str))
        return
    states = ", ".join(f"{k} {v}" for k, v in counts["documents"].items())
    typer.echo(
        f"documents: {states}\nchunks: {counts['chunks']}\nqueue depth: {counts['queue_depth']}\n"
        f"throughput (last minute): {counts['docs_per_s_last_minute']} documents/s"
    )
    if counts["stalled"]:
        typer.echo(f"stalled: {counts['stalled']}", err=True)
    for row in failures:
        typer.echo(f"failed #{row['id']} [{row['collection']}] {row['external_id']}: {row['error']}")


@app.command("retry")
def retry_command(collection: Annotated[str | None, typer.Option()] = None) -> None:
    """Queue failed documents again; a table row that could not be rendered is read again."""
    settings = get_settings()
    endpoints = embedded.ensure_services(settings)
    engine = database(settings)
    with engine.begin() as conn:
        target = collections.get_collection(conn, collection) if collection else None
        rows = sync.reread_failed(conn, target)
        ids = documents.retry(conn, target)
    celery = broker.make_app(settings, endpoints.redis_url)
    register.dispatch(engine, celery, ids, settings.task_documents)
    if rows:
        celery.send_task(broker.SYNC_TASK)
    typer.echo(f"re-queued {len(ids)} documents" + (f" and {rows} table rows to read again" if rows else ""))
