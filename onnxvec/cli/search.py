"""`onnxvec search`: ranked chunks for a query, through the same search path as the API."""

from __future__ import annotations

import asyncio
import json
from typing import Annotated

import typer

from onnxvec.cli.common import app, database, pairs
from onnxvec.config import SearchMode, get_settings
from onnxvec.embedding.service import EmbeddingService
from onnxvec.retrieval.fusion import Fusion
from onnxvec.retrieval.search import SearchResult, search_text

SCORES = {"text": "ts_rank_cd", "hybrid": "rrf"}  # what a hit's score is; vector: the collection's metric


@app.command("search")
def search_command(
    query: str,
    collection: Annotated[str, typer.Option()],
    k: Annotated[int, typer.Option("-k", "--k", min=1, max=1000)] = 5,
    filter: Annotated[list[str] | None, typer.Option(help="metadata key=value (all must match)")] = None,
    mode: Annotated[
        SearchMode | None, typer.Option(help="vector|text|hybrid (default: ONNXVEC_SEARCH_MODE, hybrid)")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Ranked chunks for a query: by vector (scored with the collection's metric), full text or both."""
    settings = get_settings()
    conditions = pairs(filter, "--filter") or None

    async def run() -> SearchResult:
        embeddings = EmbeddingService(settings)
        try:
            return await search_text(
                database(settings),
                embeddings,
                collection,
                query,
                k,
                filter=conditions,
                ef_search=settings.ef_search,
                mode=mode or settings.search_mode,
                fusion=Fusion.of(settings),
            )
        finally:
            await embeddings.close()

    found = asyncio.run(run())
    scored = SCORES.get(mode or settings.search_mode, found.collection.metric)
    if as_json:
        typer.echo(json.dumps([hit.__dict__ | {"metric": found.collection.metric} for hit in found.hits]))
        return
    for rank, hit in enumerate(found.hits, start=1):
        typer.echo(f"{rank}. {hit.score:+.4f} [{scored}] doc {hit.document_id} {hit.source or hit.external_id}")
        typer.echo(f"   {hit.text[:200]!r}")
