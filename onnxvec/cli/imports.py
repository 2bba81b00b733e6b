"""`onnxvec import`: a LangChain or LlamaIndex pgvector store taken in with its vectors, not re-embedded."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

import typer

from onnxvec.cli.common import app, database
from onnxvec.config import get_settings
from onnxvec.ingest.imports import import_store


class Library(StrEnum):
    langchain = "langchain"
    llamaindex = "llamaindex"


@app.command("import")
def import_command(
    source: Annotated[Library, typer.Option("--from", help="the library that wrote the table")],
    database_url: Annotated[str, typer.Option(help="the Postgres the store is in")],
    table: Annotated[
        str,
        typer.Option(
            help="langchain: a PGVectorStore table or a PGVector collection name; llamaindex: the store's"
            " table_name (its table is data_<table_name>)"
        ),
    ],
    collection: Annotated[str, typer.Option(help="collection to import into (created if new)")],
    model: Annotated[
        str | None, typer.Option(help="embedding model that made the vectors, for a new collection")
    ] = None,
    verify: Annotated[
        bool, typer.Option(help="embed a sample of the texts and refuse vectors that are another model's")
    ] = True,
) -> None:
    """Import every row with its text, metadata and vector as a searchable document; rows already
    imported unchanged are left alone."""
    settings = get_settings()
    report = import_store(
        settings, database(settings), source.value, database_url, table, collection, model=model, verify=verify
    )
    checked = "not checked" if report.sample_cosine is None else f"sample cosine {report.sample_cosine:.4f}"
    skipped = ", ".join(f"{n} {reason}" for reason, n in sorted(report.skipped.items())) or "0"
    typer.echo(
        f"{report.store} -> {report.collection} ({checked}): {report.imported} imported, {report.updated} updated,"
        f" {report.unchanged} unchanged, skipped {skipped}"
    )
