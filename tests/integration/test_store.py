"""Collections per metric with real model vectors in the real pgvector store."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
from sqlalchemy import Engine, text

from onnxvec.embedding.engine import EmbeddingEngine
from onnxvec.errors import CollectionNotFound, StoreError
from onnxvec.sources.files import SourceDocument
from onnxvec.storage import chunks, collections, documents

SENTENCES = [
    "Postgres stores the documents and their state.",
    "Redis carries the work signals between processes.",
    "The worker chunks each document before embedding it.",
    "HNSW indexes give fast approximate nearest neighbour search.",
    "Cosine distance compares directions, not lengths.",
    "The API speaks the same protocol as OpenAI.",
    "A cat slept on the warm windowsill all afternoon.",
    "Interest rates rose for the third quarter in a row.",
    "The mountain trail was covered in fresh snow.",
    "She baked bread with rosemary and sea salt.",
    "The violinist tuned her instrument before the concert.",
    "Photosynthesis turns light into chemical energy.",
]


def _fill(conn, collection: collections.Collection, vectors: np.ndarray, lang: str) -> int:
    source = SourceDocument(f"doc-{lang}", f"mem://{lang}", " ".join(SENTENCES), {"lang": lang})
    (doc,) = documents.register(conn, collection, [source]).queued
    rows = [
        chunks.ChunkRow(i, s, hashlib.sha256(s.encode()).hexdigest(), 10, v)
        for i, (s, v) in enumerate(zip(SENTENCES, vectors, strict=True))
    ]
    return chunks.write_chunks(conn, collection, doc, rows)


@pytest.mark.parametrize("metric", ["cosine", "l2", "ip"])
def test_each_vector_is_its_own_nearest_neighbour(engine: Engine, embedder: EmbeddingEngine, metric: str) -> None:
    vectors = embedder.embed(SENTENCES).vectors
    with engine.begin() as conn:
        col = collections.create_collection(conn, f"nn_{metric}", "all-MiniLM-L6-v2", embedder.dims, metric)
        assert _fill(conn, col, vectors, "en") == len(SENTENCES)
    with engine.begin() as conn:
        for i, vector in enumerate(vectors):
            hits = chunks.search(conn, col, vector, k=3)
            assert hits[0].ordinal == i and hits[0].text == SENTENCES[i]
            assert hits[0].score >= hits[1].score >= hits[2].score
        top = chunks.search(conn, col, vectors[0], k=1)[0]
        assert top.score == pytest.approx({"cosine": 1.0, "ip": 1.0, "l2": 0.0}[metric], abs=1e-5)


@pytest.mark.parametrize("metric", ["cosine", "l2", "ip"])
def test_search_uses_the_collections_own_hnsw_index(engine: Engine, metric: str) -> None:
    """With its rows counted (ANALYZE), a collection's top-k goes through its own HNSW index. (An
    almost empty collection is rightly served by the version_id btree and a sort instead.)"""
    vectors = np.random.default_rng(1).normal(size=(3000, 4)).astype(np.float32)
    with engine.begin() as conn:
        col = collections.create_collection(conn, f"plan_{metric}", "m", 4, metric)
        (doc,) = documents.register(conn, col, [SourceDocument("p", "mem://p", "plan", {})]).queued
        chunks.write_chunks(conn, col, doc, (chunks.ChunkRow(i, "", str(i), 1, v) for i, v in enumerate(vectors)))
    with engine.begin() as conn:
        conn.execute(text("ANALYZE chunks"))
        opclass = conn.execute(
            text(
                "SELECT opc.opcname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid"
                " JOIN pg_opclass opc ON opc.oid = i.indclass[0] WHERE c.relname = :n"
            ),
            {"n": col.index_name},
        ).scalar()
        assert opclass == collections.OPCLASS[metric]
        conn.execute(text("SET LOCAL enable_seqscan = off"))
        plan = (
            conn.execute(
                text(
                    f"EXPLAIN SELECT id FROM chunks WHERE version_id = {col.version_id}"
                    f" ORDER BY {col.vector_expr} {chunks.OPERATOR[metric]} '[1,0,0,0]' LIMIT 5"
                )
            )
            .scalars()
            .all()
        )
    assert any(col.index_name in line for line in plan), plan
    with engine.begin() as conn:  # its document is pending for a model that does not exist: leave no work behind
        collections.drop_collection(conn, col.name)


def test_filters_apply_during_the_scan(engine: Engine, embedder: EmbeddingEngine) -> None:
    vectors = embedder.embed(SENTENCES).vectors
    with engine.begin() as conn:
        col = collections.create_collection(conn, "filtered", "all-MiniLM-L6-v2", embedder.dims, "cosine")
        _fill(conn, col, vectors, "en")
        _fill(conn, col, vectors, "de")
    with engine.begin() as conn:
        hits = chunks.search(conn, col, vectors[3], k=5, filter={"lang": "de"})
    assert len(hits) == 5 and {h.metadata["lang"] for h in hits} == {"de"} and hits[0].ordinal == 3


def test_wrong_dimension_and_duplicates_are_refused(engine: Engine) -> None:
    with engine.begin() as conn:
        col = collections.create_collection(conn, "dims4", "m", 4, "l2")
        with pytest.raises(StoreError, match="already exists"):
            collections.create_collection(conn, "dims4", "m", 4, "l2")
        with pytest.raises(StoreError, match="4-d"):
            chunks.search(conn, col, np.zeros(3), k=1)
        with pytest.raises(StoreError, match="metric"):
            collections.create_collection(conn, "bad", "m", 4, "hamming")  # type: ignore[arg-type]
    with engine.begin() as conn, pytest.raises(CollectionNotFound):
        collections.get_collection(conn, "nope")


def test_drop_collection_removes_index_and_rows(engine: Engine, embedder: EmbeddingEngine) -> None:
    with engine.begin() as conn:
        col = collections.create_collection(conn, "doomed", "all-MiniLM-L6-v2", embedder.dims, "cosine")
        _fill(conn, col, embedder.embed(SENTENCES).vectors, "en")
        collections.drop_collection(conn, "doomed")
        assert conn.execute(text("SELECT count(*) FROM chunks WHERE collection_id = :c"), {"c": col.id}).scalar() == 0
        assert conn.execute(text("SELECT to_regclass(:n)"), {"n": col.index_name}).scalar() is None


def test_a_small_collection_is_searched_exactly(engine: Engine) -> None:
    """Up to EXACT_SEARCH_MAX_CHUNKS the top-k is the exact one (numpy's), whatever HNSW would find."""
    rng = np.random.default_rng(3)
    centres = rng.normal(size=(4, 16))
    vectors = (centres[rng.integers(0, 4, 2000)] + rng.normal(scale=0.05, size=(2000, 16))).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    with engine.begin() as conn:
        col = collections.create_collection(conn, "exact_small", "m", 16, "cosine")
        (doc,) = documents.register(conn, col, [SourceDocument("e", "mem://e", "exact", {})]).queued
        chunks.write_chunks(conn, col, doc, (chunks.ChunkRow(i, "", str(i), 1, v) for i, v in enumerate(vectors)))
    queries = rng.normal(size=(20, 16)).astype(np.float32)
    with engine.begin() as conn:
        for query in queries:
            hits = chunks.search(conn, col, query, k=10, ef_search=10)
            expected = np.argsort(-(vectors @ (query / np.linalg.norm(query))), kind="stable")[:10]
            assert [h.distance for h in hits] == pytest.approx(
                list(1 - vectors[expected] @ (query / np.linalg.norm(query))), abs=1e-5
            )
        collections.drop_collection(conn, col.name)
