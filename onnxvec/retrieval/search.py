"""Semantic search for a text query: embedded with the collection's own model (and its query
prefix), then the collection's ANN scan with the metadata filter inside it.

Used by the HTTP search endpoint and by retrieval for chat; blocking database work runs on threads.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy import Engine

from onnxvec.config import default
from onnxvec.embedding.service import EmbeddingService
from onnxvec.errors import InvalidRequest
from onnxvec.storage import chunks, collections
from onnxvec.values import invalid_unicode


@dataclass(frozen=True)
class SearchResult:
    collection: collections.Collection
    hits: list[chunks.Hit]
    query_tokens: int


async def search_text(
    db: Engine,
    embeddings: EmbeddingService,
    collection: str,
    query: str,
    k: int = 10,
    *,
    filter: dict[str, Any] | None = None,
    ef_search: int = default("ef_search"),
    owner: str = "",
) -> SearchResult:
    """CollectionNotFound, StoreError (bad filter) and the embedding service's errors pass through.
    The query waits for the model in `owner`'s turns, as any embeddings request of that client does."""
    if invalid_unicode(query):
        raise InvalidRequest("'query' is not valid Unicode (an unpaired surrogate).", "query")
    found = await asyncio.to_thread(find_collection, db, collection)
    manifest = embeddings.manifest(found.model)
    _, result = await embeddings.embed(manifest.name, query, prefix=manifest.query_prefix, owner=owner)
    hits = await asyncio.to_thread(_search, db, found, result.vectors[0], k, filter, ef_search)
    return SearchResult(found, hits, result.encoded.tokens[0])


def find_collection(db: Engine, name: str) -> collections.Collection:
    """The named collection; CollectionNotFound (a 404) when there is none."""
    with db.connect() as conn:
        return collections.get_collection(conn, name)


def _search(
    db: Engine, collection: collections.Collection, vector: np.ndarray, k: int, filter: dict | None, ef_search: int
) -> list[chunks.Hit]:
    with db.begin() as conn:  # SET LOCAL of the search settings needs a transaction
        return chunks.search(conn, collection, vector, k, filter=filter, ef_search=ef_search)
