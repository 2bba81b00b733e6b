"""The worker's job for one batch of document ids: claim, chunk, embed what changed, write, finish.

Each batch is one claim transaction, one embedding pass per version of each collection (token-budget
batches across all its documents' chunks) and one write transaction per collection that replaces the
documents' chunks in every version and marks them done. Chunks whose text is unchanged keep their
stored vectors, as do those of a version with the same model (onnxvec/ingest/reembed.py builds one).
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
from onnxvec.storage import chunks, collections, documents, versions

log = logging.getLogger(__name__)


@dataclass
class Outcome:
    done: int = 0
    failed: int = 0
    skipped: int = 0  # claimed elsewhere, already done, or changed while we worked
    embedded_chunks: int = 0
    reused_chunks: int = 0


@dataclass
class Prepared:
    """Documents chunked and embedded for one version of their collection."""

    rows: dict[int, list[chunks.ChunkRow]]
    errors: dict[int, str]  # documents that gave no chunk
    embedded: int
    reused: int


class Pipeline:
    """Per worker process: models loaded once."""

    def __init__(self, settings: Settings, db: Engine) -> None:
        self.settings = settings
        self.db = db
        self.owner = f"{socket.gethostname()}:{os.getpid()}"
        self.models = EngineRegistry(settings)

    def embedder(self, model: str) -> EmbeddingEngine:
        return self.models.engine(model)

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
            self._fail({doc.id: doc.last_error or "document has no content" for doc in docs if doc.content is None})
            outcome.failed += sum(doc.content is None for doc in docs)
            texts = {doc.id: doc.content for doc in docs if doc.content is not None}
            if texts:
                self._process_collection(collection_id, texts, {doc.id: doc.content_hash for doc in docs}, outcome)

    def _process_collection(self, collection_id: int, texts: dict[int, str], hashes: dict, out: Outcome) -> None:
        """Chunk and embed for every version of the collection, then write them all in one transaction.
        A version that appears meanwhile (a re-embed started) is prepared too before anything is written,
        so no document is done without its chunks in each version."""
        prepared: dict[int, tuple[collections.Collection, Prepared]] = {}
        known: dict[str, dict] = {}  # versions of one model share what this batch embedded
        while texts:
            with self.db.connect() as conn:
                targets = collections.every_version(conn, collection_id)
            try:
                for target in targets:
                    if target.version_id not in prepared:
                        prepared[target.version_id] = (target, self.prepare(target, texts, known))
            except ModelNotFound as exc:  # permanent for this collection; documents of others in the batch go on
                self._fail(dict.fromkeys(texts, f"embedding model unavailable: {exc}"))
                out.failed += len(texts)
                return
            errors = {
                doc_id: error
                for _, ready in prepared.values()
                for doc_id, error in ready.errors.items()
                if doc_id in texts
            }
            if errors:
                self._fail(errors)
                out.failed += len(errors)
                texts = {doc_id: content for doc_id, content in texts.items() if doc_id not in errors}
                continue
            with self.db.begin() as conn:
                live = set(versions.lock_collection(conn, collection_id))
                if not live <= set(prepared):
                    continue
                writes = [
                    (target, ready.rows) for version_id, (target, ready) in prepared.items() if version_id in live
                ]
                written = documents.finish(conn, self.owner, {d: hashes[d] for d in texts}, writes)
            out.done += len(written)
            out.skipped += len(texts) - len(written)
            out.embedded_chunks += sum(ready.embedded for _, ready in prepared.values())
            out.reused_chunks += sum(ready.reused for _, ready in prepared.values())
            return

    def prepare(
        self, collection: collections.Collection, texts: dict[int, str], known: dict[str, dict] | None = None
    ) -> Prepared:
        """Chunk documents as the collection's version does and embed the chunks no stored vector of its
        model covers, nor one in `known` (vectors by model, then (document, chunk hash), that this batch
        embedded for another version; the new ones are added). ModelNotFound when the model is not here."""
        engine = self.embedder(collection.model)
        size = min(collection.chunk_tokens, engine.passage_tokens)
        chunked = {
            doc_id: chunk_text(content, engine.tokenizer, size, collection.chunk_overlap)
            for doc_id, content in texts.items()
        }
        errors = {doc_id: "empty text: nothing to embed" for doc_id, pieces in chunked.items() if not pieces}
        chunked = {doc_id: pieces for doc_id, pieces in chunked.items() if pieces}
        if not chunked:
            return Prepared({}, errors, 0, 0)
        with self.db.connect() as conn:
            stored = chunks.existing_vectors(conn, list(chunked), collection.model)
        batch = {} if known is None else known.setdefault(collection.model, {})
        stored |= batch
        todo = [
            (doc_id, c) for doc_id, pieces in chunked.items() for c in pieces if (doc_id, c.content_hash) not in stored
        ]
        result = engine.embed_ids([engine.passage_ids(c.token_ids) for _, c in todo])
        fresh = {(doc_id, c.ordinal): v for (doc_id, c), v in zip(todo, result.vectors, strict=True)}
        batch.update({(doc_id, c.content_hash): v for (doc_id, c), v in zip(todo, result.vectors, strict=True)})
        special = engine.tokenizer.max_length - engine.passage_tokens  # special tokens and passage prefix
        rows = {doc_id: [_row(doc_id, c, fresh, stored, special) for c in pieces] for doc_id, pieces in chunked.items()}
        return Prepared(rows, errors, len(todo), sum(len(pieces) for pieces in chunked.values()) - len(todo))

    def _fail(self, errors: dict[int, str]) -> None:
        if errors:
            with self.db.begin() as conn:
                for doc_id, error in errors.items():
                    documents.fail(conn, self.owner, doc_id, error)

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
