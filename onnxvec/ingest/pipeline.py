"""The worker's job for one batch of document ids: claim, chunk, embed what changed, write, finish.

Each batch is one claim transaction, one embedding pass (token-budget batches across all its
documents' chunks) and one write transaction per collection that replaces the documents' chunks and
marks them done. Chunks whose text is unchanged keep their stored vectors.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from sqlalchemy import Engine

from onnxvec.config import Settings
from onnxvec.embedding.chunker import Chunk, chunk_text
from onnxvec.embedding.engine import EmbeddingEngine
from onnxvec.embedding.registry import EngineRegistry
from onnxvec.errors import ModelNotFound
from onnxvec.storage import chunks, collections, documents

log = logging.getLogger(__name__)


@dataclass
class Outcome:
    done: int = 0
    failed: int = 0
    skipped: int = 0  # claimed elsewhere, already done, or changed while we worked
    embedded_chunks: int = 0
    reused_chunks: int = 0


class Pipeline:
    """Per worker process: models loaded once, collections looked up once."""

    def __init__(self, settings: Settings, db: Engine) -> None:
        self.settings = settings
        self.db = db
        self.owner = f"{socket.gethostname()}:{os.getpid()}"
        self.models = EngineRegistry(settings)
        self._collections: dict[int, collections.Collection] = {}

    def embedder(self, model: str) -> EmbeddingEngine:
        return self.models.engine(model)

    def collection(self, collection_id: int) -> collections.Collection:
        if collection_id not in self._collections:
            with self.db.connect() as conn:
                self._collections[collection_id] = collections.get_collection_by_id(conn, collection_id)
        return self._collections[collection_id]

    def process(self, ids: Sequence[int]) -> Outcome:
        outcome = Outcome()
        with self.db.begin() as conn:
            claimed = documents.claim(conn, ids, self.owner, self.settings.lease_seconds)
        outcome.skipped = len(ids) - len(claimed)
        with self._heartbeat([doc.id for doc in claimed]):
            self._process_claimed(claimed, outcome)
        return outcome

    @contextlib.contextmanager
    def _heartbeat(self, ids: list[int]) -> Iterator[None]:
        """Renew the claims every third of a lease while the batch runs (ONNX Runtime and the tokenizer
        release the GIL, so this thread gets its turn), so that a short lease only ever lapses for a
        worker that died."""
        stop = threading.Event()
        lease = self.settings.lease_seconds

        def beat() -> None:
            while not stop.wait(lease / 3):
                try:
                    with self.db.begin() as conn:
                        documents.renew(conn, self.owner, ids, lease)
                except Exception as exc:  # noqa: BLE001 (the database is down: the batch itself will say so)
                    log.warning("could not renew %d claims: %s", len(ids), exc)

        thread = threading.Thread(target=beat, name="lease-heartbeat", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join(timeout=lease)  # a renewal stuck on the database must not hold the task

    def _process_claimed(self, claimed: list[documents.Claimed], outcome: Outcome) -> None:
        by_collection: dict[int, list[documents.Claimed]] = defaultdict(list)
        for doc in claimed:
            by_collection[doc.collection_id].append(doc)
        for collection_id, docs in by_collection.items():
            collection = self.collection(collection_id)
            try:
                engine = self.embedder(collection.model)
            except ModelNotFound as exc:  # permanent for this collection; documents of others in the batch go on
                with self.db.begin() as conn:
                    for doc in docs:
                        documents.fail(conn, self.owner, doc.id, f"embedding model unavailable: {exc}")
                outcome.failed += len(docs)
                continue
            self._process_collection(collection, engine, docs, outcome)

    def _process_collection(
        self, collection: collections.Collection, engine: EmbeddingEngine, docs: list[documents.Claimed], out: Outcome
    ) -> None:
        chunked: dict[int, list[Chunk]] = {}
        errors: dict[int, str] = {}
        for doc in docs:
            if doc.content is None:
                errors[doc.id] = doc.last_error or "document has no content"
            elif not (
                pieces := chunk_text(
                    doc.content,
                    engine.tokenizer,
                    min(collection.chunk_tokens, engine.passage_tokens),
                    collection.chunk_overlap,
                )
            ):
                errors[doc.id] = "empty text: nothing to embed"
            else:
                chunked[doc.id] = pieces
        if errors:
            with self.db.begin() as conn:
                for doc_id, error in errors.items():
                    documents.fail(conn, self.owner, doc_id, error)
            out.failed += len(errors)
        if not chunked:
            return
        with self.db.connect() as conn:
            stored = chunks.existing_vectors(conn, list(chunked))
        todo = [
            (doc_id, c) for doc_id, pieces in chunked.items() for c in pieces if (doc_id, c.content_hash) not in stored
        ]
        result = engine.embed_ids([engine.passage_ids(c.token_ids) for _, c in todo])
        fresh = {(doc_id, c.ordinal): v for (doc_id, c), v in zip(todo, result.vectors, strict=True)}
        hashes = {doc.id: doc.content_hash for doc in docs}
        special = engine.tokenizer.max_length - engine.passage_tokens  # special tokens and passage prefix
        results = {
            doc_id: (hashes[doc_id], [_row(doc_id, c, fresh, stored, special) for c in pieces])
            for doc_id, pieces in chunked.items()
        }
        with self.db.begin() as conn:
            written = documents.finish(conn, self.owner, collection, results)
        out.done += len(written)
        out.skipped += len(chunked) - len(written)
        out.embedded_chunks += len(todo)
        out.reused_chunks += sum(len(c) for c in chunked.values()) - len(todo)

    def release(self, ids: Sequence[int], error: str) -> None:
        """After a transient failure: give this process's claims back as pending."""
        with self.db.begin() as conn:
            documents.release(conn, self.owner, ids, error)

    def stale(self, queue_empty: bool) -> list[int]:
        """For the reconciler: give up on documents out of attempts, then list what the queue may have
        lost; with the queue empty, whatever has waited a reconcile period (no message carries it)."""
        wait = self.settings.reconcile_seconds if queue_empty else self.settings.requeue_after_seconds
        with self.db.begin() as conn:
            documents.give_up(conn, self.settings.max_attempts)
            return documents.stale(conn, wait)


def _row(doc_id: int, chunk: Chunk, fresh: dict, stored: dict, special_tokens: int) -> chunks.ChunkRow:
    """A chunk with its new vector, or the stored one when its text did not change."""
    vector = fresh.get((doc_id, chunk.ordinal))
    if vector is None:
        vector = stored[(doc_id, chunk.content_hash)]
    tokens = len(chunk.token_ids) + special_tokens
    return chunks.ChunkRow(chunk.ordinal, chunk.text, chunk.content_hash, tokens, vector, chunk.section)
