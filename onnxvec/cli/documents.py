"""`onnxvec documents`: remove documents from a collection by id (ingest adds them)."""

from __future__ import annotations

from typing import Annotated

import typer

from onnxvec.cli.common import app, database, fail
from onnxvec.config import get_settings
from onnxvec.storage import collections, documents

documents_app = typer.Typer(no_args_is_help=True, help="Documents of a collection.")
app.add_typer(documents_app, name="documents")


@documents_app.command("rm")
def documents_rm(
    collection: str,
    ids: Annotated[list[str], typer.Argument(help="document ids (as `onnxvec status --failed` shows them)")],
) -> None:
    """Delete documents and their chunks: search stops finding them at once. Exits 1 if any id was not there."""
    with database(get_settings()).begin() as conn:
        removed = documents.remove(conn, collections.get_collection(conn, collection), ids)
    typer.echo(f"removed {removed} of {len(set(ids))} documents from {collection}")
    if removed < len(set(ids)):
        raise fail(f"{len(set(ids)) - removed} of the ids are not in {collection}")
