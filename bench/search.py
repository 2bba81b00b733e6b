"""HNSW search latency and recall@10 against an exact scan, with and without a metadata filter.

--chunks clustered unit vectors (384-d, like MiniLM's: 1,000 topics plus noise) are stored in one
collection through the store's own write path, 1,000 chunks per document, documents tagged with one of
ten buckets. Queries are fresh samples from the same topics. For each ef_search the script times
`chunks.search` (SQL included, as the API calls it) and compares its top-10 with the exact top-10
computed in numpy; the filtered run asks for one bucket (10% of the chunks), which pgvector's iterative
index scan serves inside the ANN scan.

Usage: python bench/search.py [--chunks 100000] [--queries 200] [--ef 40,100,200]   (last line: JSON)
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
from sqlalchemy import Engine

from onnxvec.config import Settings
from onnxvec.embedding.engine import l2_normalize
from onnxvec.infra import db, embedded
from onnxvec.sources.files import SourceDocument
from onnxvec.storage import chunks, collections, documents

DIMS, TOPICS, PER_DOC, BUCKETS = 384, 1000, 1000, 10


def clustered(rng: np.random.Generator, centers: np.ndarray, count: int) -> np.ndarray:
    topics = rng.integers(0, len(centers), count)
    return l2_normalize(centers[topics] + rng.normal(0, 0.06, (count, DIMS)).astype(np.float32))


def load(engine: Engine, name: str, vectors: np.ndarray) -> tuple[collections.Collection, dict[int, int], float]:
    """Store the vectors (index built after the load, as a bulk load should): the collection, each
    document id's position, and the seconds taken."""
    started = time.perf_counter()
    with engine.begin() as conn:
        col = collections.create_collection(conn, name, "synthetic-384", DIMS, "cosine")
        collections.drop_index(conn, col)
        sources = [
            SourceDocument(f"d{i}", f"bench://d{i}", f"doc {i}", {"bucket": i % BUCKETS})
            for i in range(len(vectors) // PER_DOC)
        ]
        ids = documents.register(conn, col, sources).queued
        for i, doc_id in enumerate(ids):
            part = vectors[i * PER_DOC : (i + 1) * PER_DOC]
            rows = (chunks.ChunkRow(j, "", f"{i}-{j}", 1, v) for j, v in enumerate(part))
            chunks.write_chunks(conn, col, doc_id, rows)
        collections.create_index(conn, col)
    with engine.begin() as conn:  # fresh statistics, as after any bulk load: else the planner may scan
        conn.exec_driver_sql("ANALYZE chunks")
        conn.exec_driver_sql("ANALYZE documents")
    return col, {doc_id: i for i, doc_id in enumerate(ids)}, time.perf_counter() - started


def run(
    engine: Engine,
    col: collections.Collection,
    position: dict[int, int],
    queries: np.ndarray,
    truth: list[set[int]],
    ef: int,
    flt: dict | None,
) -> tuple[np.ndarray, float]:
    """(latencies in ms, recall@10) of chunks.search over the queries, one transaction each as the API does."""
    latencies, recalls = [], []
    for query, exact in zip(queries, truth, strict=True):
        started = time.perf_counter()
        with engine.begin() as conn:
            hits = chunks.search(conn, col, query, 10, filter=flt, ef_search=ef)
        latencies.append((time.perf_counter() - started) * 1000)
        found = {position[h.document_id] * PER_DOC + h.ordinal for h in hits}
        recalls.append(len(found & exact) / 10)
    return np.array(latencies), float(np.mean(recalls))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--chunks", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--ef", default="40,100,200")
    args = parser.parse_args()
    count = args.chunks // PER_DOC * PER_DOC

    settings = Settings()
    engine = db.make_engine(embedded.ensure_services(settings).database_url)
    db.upgrade(engine)
    rng = np.random.default_rng(0)
    centers = rng.normal(0, 1, (TOPICS, DIMS)).astype(np.float32) / np.sqrt(DIMS)
    vectors = clustered(rng, centers, count)
    queries = clustered(rng, centers, args.queries)
    name = f"bench-search-{count}"
    with engine.begin() as conn:
        if name in {c.name for c in collections.list_collections(conn)}:
            collections.drop_collection(conn, name)
    col, position, load_s = load(engine, name, vectors)
    print(f"loaded {count} vectors in {load_s:.1f} s (index built after the load)")

    buckets = (np.arange(count) // PER_DOC) % BUCKETS
    scores = queries @ vectors.T
    truth = [set(np.argsort(-row)[:10].tolist()) for row in scores]
    bucket = 3
    masked = np.where(buckets == bucket, scores, -np.inf)
    truth_filtered = [set(np.argsort(-row)[:10].tolist()) for row in masked]

    run(engine, col, position, queries[:20], truth[:20], 100, None)  # warm the index into memory
    results = []
    for ef in (int(x) for x in args.ef.split(",")):
        plain, recall = run(engine, col, position, queries, truth, ef, None)
        filtered, recall_f = run(engine, col, position, queries, truth_filtered, ef, {"bucket": bucket})
        row = {
            "ef_search": ef,
            "p50_ms": round(float(np.percentile(plain, 50)), 2),
            "p99_ms": round(float(np.percentile(plain, 99)), 2),
            "recall_at_10": round(recall, 4),
            "filtered_p50_ms": round(float(np.percentile(filtered, 50)), 2),
            "filtered_p99_ms": round(float(np.percentile(filtered, 99)), 2),
            "filtered_recall_at_10": round(recall_f, 4),
        }
        print(json.dumps(row))
        results.append(row)
    good = [r for r in results if r["recall_at_10"] >= 0.95 and r["filtered_recall_at_10"] >= 0.95]
    chosen = min(good, key=lambda r: r["p50_ms"]) if good else results[-1]
    with engine.begin() as conn:
        collections.drop_collection(conn, name)
    print(json.dumps(chosen | {"chunks": count, "load_s": round(load_s, 1), "queries": args.queries}))


if __name__ == "__main__":
    main()
