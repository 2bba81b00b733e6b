"""`onnxvec collections`: create, list, remove, and the metadata a collection hides."""

from __future__ import annotations

from typing import Annotated

import typer

from onnxvec.cli.common import app, database
from onnxvec.config import get_settings
from onnxvec.ingest.register import new_collection
from onnxvec.storage import collections

collections_app = typer.Typer(no_args_is_help=True, help="Vector collections.")
app.add_typer(collections_app, name="collections")

_HIDE_HELP = "comma-separated metadata paths (owner.email) search never returns nor filters on"


@collections_app.command("create")
def collections_create(
    name: str,
    metric: Annotated[str, typer.Option(help="cosine|l2|ip")] = "cosine",
    model: Annotated[str | None, typer.Option(help="embedding model (default: settings)")] = None,
    hide_metadata: Annotated[str, typer.Option(help=_HIDE_HELP)] = "",
    chunk_tokens: Annotated[
        int | None, typer.Option(help="tokens per chunk (default: ONNXVEC_CHUNK_TOKENS, 256)")
    ] = None,
    chunk_overlap: Annotated[
        int | None, typer.Option(help="tokens consecutive chunks share (default: ONNXVEC_CHUNK_OVERLAP, 32)")
    ] = None,
    language: Annotated[
        str | None,
        typer.Option(help="text search configuration, e.g. german, simple (default: ONNXVEC_LANGUAGE, english)"),
    ] = None,
) -> None:
    """Create a collection: its model, metric, chunking, full-text language and the metadata it hides."""
    settings = get_settings()
    with database(settings).begin() as conn:
        col = new_collection(
            conn,
            settings,
            name,
            model,
            metric,
            chunk_tokens=chunk_tokens,
            chunk_overlap=chunk_overlap,
            language=language,
        )
        if hide_metadata:
            col = collections.hide_metadata(conn, name, hide_metadata.split(","))
    typer.echo(
        f"created {col.name}: {col.model}, {col.dims} dims, {col.metric}, chunks of {col.chunk_tokens} tokens"
        f" ({col.chunk_overlap} shared), full text in {col.language}, index {col.index_name}"
    )


@collections_app.command("hide")
def collections_hide(
    name: str,
    paths: Annotated[str, typer.Argument(help=_HIDE_HELP + "; empty shows everything again")],
) -> None:
    """Set the metadata paths a collection hides: search results leave them out and filters refuse them."""
    with database(get_settings()).begin() as conn:
        col = collections.hide_metadata(conn, name, paths.split(","))
    typer.echo(f"{col.name} hides {', '.join(col.hidden_metadata) or 'no metadata'}")


@collections_app.command("list")
def collections_list() -> None:
    with database(get_settings()).connect() as conn:
        for col in collections.list_collections(conn):
            hidden = f"  hides {','.join(col.hidden_metadata)}" if col.hidden_metadata else ""
            typer.echo(f"{col.name:<24} {col.model:<28} {col.dims:>5}  {col.metric:<6} {col.language}{hidden}")


@collections_app.command("rm")
def collections_rm(name: str) -> None:
    """Delete a collection with its documents, chunks and index (one a table source feeds is refused)."""
    with database(get_settings()).begin() as conn:
        collections.drop_collection(conn, name)
    typer.echo(f"removed collection {name}")
