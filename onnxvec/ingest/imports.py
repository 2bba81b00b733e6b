"""Import a LangChain or LlamaIndex pgvector store with its vectors instead of embedding it again.

Everything is checked before anything is written: the store exists, its vectors have the model's
dimensions, and they are that model's vectors (a sample of its texts is embedded and compared).
Each row then becomes a done document holding one chunk with the imported vector, registered as
`ingest` registers text (same content hash), so ingesting the same text later finds it unchanged.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
from sqlalchemy import Engine

from onnxvec.config import Settings
from onnxvec.embedding.engine import EmbeddingEngine, l2_normalize
from onnxvec.embedding.registry import EngineRegistry
from onnxvec.errors import CollectionNotFound, StoreError
from onnxvec.infra import source_db
from onnxvec.ingest.register import ensure_collection
from onnxvec.models.pull import pull
from onnxvec.sources import vectorstores
from onnxvec.sources.files import SourceDocument
from onnxvec.sources.vectorstores import ForeignRow, Layout
from onnxvec.storage import chunks, collections, documents
from onnxvec.values import unstorable

SAMPLE = 16  # rows whose text is embedded again to check the vectors came from the model
MIN_COSINE = 0.99  # the sample's mean cosine below which the vectors are another model's


@dataclass
class ImportReport:
    collection: str
    store: str
    imported: int = 0
    updated: int = 0
    unchanged: int = 0
    skipped: Counter[str] = field(default_factory=Counter)  # reason -> rows
    sample_cosine: float | None = None  # None: not checked (--no-verify)


def import_store(
    settings: Settings,
    db: Engine,
    source: str,
    database_url: str,
    name: str,
    collection_name: str,
    *,
    model: str | None = None,
    verify: bool = True,
    batch: int = 500,
) -> ImportReport:
    """Bring the store `name` (see vectorstores.locate) from `database_url` into the collection, created
    with `model` if it is new. StoreError, before any write, for a store of other dimensions or (unless
    `verify` is false) of another model's vectors."""
    with source_db.engine_for(database_url).connect() as foreign:
        layout = vectorstores.locate(foreign.connection.driver_connection, source, name)
        raw = chunks.vector_connection(foreign)  # the store's tables exist, so pgvector's types do
        engine = _engine(settings, db, collection_name, model)
        report = ImportReport(collection_name, layout.label)
        sample = _sample(vectorstores.read(raw, layout, SAMPLE * 4), SAMPLE)
        if not sample:
            raise StoreError(f"{layout.label} has no row with both text and a vector to import")
        _check_dims(layout, engine, sample)
        if verify:
            report.sample_cosine = _check_model(layout, engine, sample)
        with db.begin() as conn:
            collection = ensure_collection(conn, settings, collection_name, engine.manifest.name, None)
        for rows in vectorstores.read(raw, layout, batch):
            _import_batch(db, collection, layout, engine, rows, report)
    return report


def _engine(settings: Settings, db: Engine, collection_name: str, model: str | None) -> EmbeddingEngine:
    """The embedding engine of the collection's model (or of `model`, for a collection not yet made)."""
    try:
        with db.connect() as conn:
            existing = collections.get_collection(conn, collection_name)
    except CollectionNotFound:
        existing = None
    if existing and model and model != existing.model:
        raise StoreError(f"collection {collection_name!r} uses {existing.model}, not {model}", "model")
    if existing and len(_versions(db, existing)) > 1:  # vectors of one model cannot fill the others
        raise StoreError(
            f"collection {collection_name!r} has more than one embedding version: import when the build is"
            " done and the others pruned (onnxvec collections prune-versions)"
        )
    registry = EngineRegistry(settings)
    name = existing.model if existing else model or settings.embedding_model
    pull(registry.store, name)
    return registry.engine(name)


def _versions(db: Engine, collection: collections.Collection) -> list[collections.Collection]:
    with db.connect() as conn:
        return collections.every_version(conn, collection.id)


def _sample(pages: Iterator[list[ForeignRow]], n: int) -> list[ForeignRow]:
    """The first `n` importable rows."""
    found: list[ForeignRow] = []
    for rows in pages:
        found += [row for row in rows if _skip_reason(row) is None]
        if len(found) >= n:
            break
    return found[:n]


def _check_dims(layout: Layout, engine: EmbeddingEngine, sample: list[ForeignRow]) -> None:
    dims = sorted({len(row.vector) for row in sample if row.vector is not None})
    if dims != [engine.dims]:
        raise StoreError(
            f"{layout.label} holds {'/'.join(map(str, dims))}-d vectors; "
            f"{engine.manifest.name} makes {engine.dims}-d vectors: import into a collection of a model of that size"
        )


def _check_model(layout: Layout, engine: EmbeddingEngine, sample: list[ForeignRow]) -> float:
    """The mean cosine between the sample's stored vectors and the model's vectors of their texts;
    StoreError below MIN_COSINE."""
    ours = engine.embed([row.text or "" for row in sample]).vectors
    theirs = np.stack([row.vector for row in sample if row.vector is not None])
    mean = float(np.mean(np.sum(l2_normalize(ours) * l2_normalize(theirs), axis=1)))
    if mean < MIN_COSINE:
        raise StoreError(
            f"the vectors of {layout.label} are not {engine.manifest.name}'s: re-embedding {len(sample)} of its "
            f"texts gives a mean cosine of {mean:.3f} with the stored vectors (at least {MIN_COSINE} expected); "
            "import into a collection of the model that made them, or pass --no-verify"
        )
    return mean


def _skip_reason(row: ForeignRow) -> str | None:
    if row.external_id is None:
        return "no id"
    if row.text is None or not row.text.strip():
        return "no text"
    if row.vector is None:
        return "no vector"
    if unstorable(row.metadata):  # a json column holds "\u0000", jsonb does not
        return "metadata jsonb cannot hold"
    return None


def _import_batch(
    db: Engine,
    collection: collections.Collection,
    layout: Layout,
    engine: EmbeddingEngine,
    rows: list[ForeignRow],
    report: ImportReport,
) -> None:
    """One page of rows as done documents with one chunk each, in one transaction."""
    usable: dict[str, ForeignRow] = {}
    for row in rows:
        reason = _skip_reason(row)
        if reason is None:
            usable[row.external_id] = row  # an id twice in a page (LlamaIndex node ids need not be unique): last wins
        else:
            report.skipped[reason] += 1
    docs = [SourceDocument(eid, layout.label, row.text or "", _metadata(row.metadata)) for eid, row in usable.items()]
    tokens = engine.tokenizer.encode([d.text for d in docs]).tokens if docs else []
    with db.begin() as conn:
        written = documents.put_done(conn, collection, docs)
        chunks.write_chunks_of(
            conn,
            collection,
            (
                (written[d.external_id][0], _chunk(d, usable[d.external_id].vector, n, collection, engine))
                for d, n in zip(docs, tokens, strict=True)
                if d.external_id in written
            ),
        )
    report.imported += sum(new for _, new in written.values())
    report.updated += sum(not new for _, new in written.values())
    report.unchanged += len(docs) - len(written)


def _chunk(
    doc: SourceDocument,
    vector: np.ndarray | None,
    tokens: int,
    collection: collections.Collection,
    engine: EmbeddingEngine,
) -> chunks.ChunkRow:
    """The document's one chunk: its whole text with the imported vector, L2-normalized as the worker
    stores the model's vectors (for a cosine collection, or a model that normalizes)."""
    vector = np.asarray(vector, dtype=np.float32)
    if collection.metric == "cosine" or engine.manifest.normalize:
        vector = l2_normalize(vector[None, :])[0]
    return chunks.ChunkRow(0, doc.text, doc.content_hash, tokens, vector)


# LlamaIndex keeps the whole node (its text again) in metadata_ under these keys: not the user's metadata
LLAMAINDEX_INTERNAL = ("_node_content", "_node_type")


def _metadata(value: object) -> dict:
    """The row's metadata as a document's: a JSON object as is (less LlamaIndex's copy of the node),
    any other JSON value under "metadata"."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        return {"metadata": value}
    return {key: item for key, item in value.items() if key not in LLAMAINDEX_INTERNAL}
