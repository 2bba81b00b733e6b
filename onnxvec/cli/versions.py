"""`onnxvec collections reembed | versions | activate | pause | resume | prune-versions`: a collection's
embedding versions (onnxvec/ingest/reembed.py)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

import typer

from onnxvec.cli.collections import collections_app
from onnxvec.cli.common import database
from onnxvec.config import get_settings
from onnxvec.infra import broker, embedded
from onnxvec.ingest import reembed
from onnxvec.storage import collections, versions


@collections_app.command("reembed")
def collections_reembed(
    name: str,
    model: Annotated[str | None, typer.Option(help="the new embedding model (a pulled one)")] = None,
    metric: Annotated[str | None, typer.Option(help="cosine|l2|ip")] = None,
    chunk_tokens: Annotated[int | None, typer.Option(help="tokens per chunk")] = None,
    chunk_overlap: Annotated[int | None, typer.Option(help="tokens consecutive chunks share")] = None,
    activate: Annotated[bool, typer.Option(help="switch to the new version once it is built")] = True,
) -> None:
    """Build a new embedding version from the stored text, in the background, while search keeps using
    the active one; it becomes active when built (unless --no-activate)."""
    settings = get_settings()
    with database(settings).begin() as conn:
        collection = collections.get_collection(conn, name)
        version = reembed.start(
            conn,
            settings,
            collection,
            model=model,
            metric=metric,
            chunk_tokens=chunk_tokens,
            chunk_overlap=chunk_overlap,
            activate=activate,
        )
    broker.enqueue_build(broker.make_app(settings, embedded.ensure_services(settings).redis_url), version.id)
    typer.echo(
        f"{name}: building version {version.version} ({version.model}, {version.dims} dims, {version.metric},"
        f" chunks of {version.chunk_tokens} tokens); see `onnxvec collections versions {name}`"
    )


@collections_app.command("versions")
def collections_versions(name: str) -> None:
    """The collection's embedding versions: settings, state, progress and ETA of a build, chunks."""
    with database(get_settings()).connect() as conn:
        found = versions.list_versions(conn, collections.get_collection(conn, name).id)
    now = datetime.now(UTC)
    for v in found:
        eta = v.eta_seconds(now)
        typer.echo(
            f"{'*' if v.active else ' '} {v.version:>3}  {v.model:<28} {v.dims:>5}  {v.metric:<6}"
            f" chunks {v.chunk_tokens}/{v.chunk_overlap}  {v.state:<8} {v.progress:>4.0%}"
            f"{'' if eta is None else f' ETA {eta:.0f} s'}  {v.chunks} chunks"
            f"{f'  ({v.error})' if v.error else ''}"
        )


@collections_app.command("activate")
def collections_activate(name: str, version: int) -> None:
    """Make a built version the one search and chat use (a roll forward, or back)."""
    with database(get_settings()).begin() as conn:
        reembed.activate(conn, collections.get_collection(conn, name), version)
    typer.echo(f"{name}: version {version} is active")


@collections_app.command("pause")
def collections_pause(name: str, version: int) -> None:
    """Stop a version's build where it is (ingest still writes to it); `resume` goes on."""
    with database(get_settings()).begin() as conn:
        reembed.pause(conn, collections.get_collection(conn, name), version, paused=True)
    typer.echo(f"{name}: the build of version {version} is paused")


@collections_app.command("resume")
def collections_resume(name: str, version: int) -> None:
    settings = get_settings()
    with database(settings).begin() as conn:
        found = reembed.pause(conn, collections.get_collection(conn, name), version, paused=False)
    broker.enqueue_build(
        broker.make_app(settings, embedded.ensure_services(settings).redis_url), found.id, found.built_through
    )
    typer.echo(f"{name}: the build of version {version} goes on")


@collections_app.command("prune-versions")
def collections_prune_versions(name: str) -> None:
    """Remove every version but the active one, with its chunks and index (a build is cancelled)."""
    with database(get_settings()).begin() as conn:
        gone = reembed.prune(conn, collections.get_collection(conn, name))
    typer.echo(f"{name}: removed versions {', '.join(map(str, gone))}" if gone else f"{name}: only the active version")
