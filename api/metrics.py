"""Prometheus metrics: HTTP traffic, micro-batches, tokens, and ingest progress read at scrape time."""

from __future__ import annotations

import logging
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from redis.exceptions import RedisError
from sqlalchemy import Engine
from sqlalchemy.exc import OperationalError

from onnxvec.chat.generate import GenerationState
from onnxvec.infra import broker
from onnxvec.ingest import sync
from onnxvec.storage import stats, table_sources

log = logging.getLogger(__name__)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


class IngestCollector(Collector):
    """Documents by collection and state, and the queue's depth, from Postgres and Redis when scraped."""

    def __init__(self, db: Engine, redis_url: str) -> None:
        self.db = db
        self.redis_url = redis_url

    def collect(self) -> Iterator[GaugeMetricFamily]:
        docs = GaugeMetricFamily(
            "onnxvec_ingest_documents", "Documents by collection and state", labels=["collection", "state"]
        )
        chunks = GaugeMetricFamily("onnxvec_ingest_chunks", "Stored chunks by collection", labels=["collection"])
        lag = GaugeMetricFamily(
            "onnxvec_source_lag_seconds", "Age of a table source's oldest queued change (0: none)", labels=["source"]
        )
        queued = GaugeMetricFamily("onnxvec_source_queued_rows", "A table source's queued changes", labels=["source"])
        rate = GaugeMetricFamily(
            "onnxvec_source_rows_per_second",
            "A table source's rows embedded per second, last minute",
            labels=["source"],
        )
        try:
            with self.db.connect() as conn:
                for name, state, count in stats.counts_by_collection(conn):
                    docs.add_metric([name, state], count)
                for name, count in stats.chunks_by_collection(conn):
                    chunks.add_metric([name], count)
                for source in table_sources.list_sources(conn):
                    shown = sync.status(conn, source)
                    rate.add_metric([source.name], shown["rows_per_second"])
                    if shown["queued"] is not None:  # its database is reachable
                        lag.add_metric([source.name], shown["lag_seconds"])
                        queued.add_metric([source.name], shown["queued"])
            yield from (docs, chunks, lag, queued, rate)
        except OperationalError:  # the scrape still reports the API's own metrics
            log.warning("metrics: database unavailable, ingest gauges left out")
        try:
            depth = GaugeMetricFamily("onnxvec_queue_depth", "Messages waiting in the ingest queue")
            depth.add_metric([], broker.queue_depth(self.redis_url))
            yield depth
        except RedisError:
            log.warning("metrics: redis unavailable, queue depth left out")


class Metrics:
    """One registry per app, so several apps (tests) never collide in the global one."""

    def __init__(self, db: Engine, redis_url: str) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "onnxvec_requests", "HTTP requests by route and status", ["method", "route", "status"], registry=r
        )
        self.latency = Histogram(
            "onnxvec_request_seconds", "HTTP request latency by route", ["route"], buckets=LATENCY_BUCKETS, registry=r
        )
        self.batch_inputs = Histogram(
            "onnxvec_batch_inputs",
            "Inputs per ONNX forward",
            ["model"],
            buckets=BATCH_BUCKETS,
            registry=r,
        )
        self.batch_seconds = Histogram(
            "onnxvec_batch_seconds", "Seconds per ONNX forward", ["model"], buckets=LATENCY_BUCKETS, registry=r
        )
        self.queue_wait = Histogram(
            "onnxvec_queue_wait_seconds", "Wait for the first forward", ["model"], buckets=LATENCY_BUCKETS, registry=r
        )
        self.queued_inputs = Gauge("onnxvec_queued_inputs", "Inputs waiting for a forward", registry=r)
        self.tokens = Counter("onnxvec_tokens_embedded", "Tokens embedded by the API", ["model"], registry=r)
        self.completions = Counter(
            "onnxvec_chat_completions", "Chat completions by finish reason", ["model", "finish_reason"], registry=r
        )
        self.completion_tokens = Counter("onnxvec_chat_completion_tokens", "Tokens generated", ["model"], registry=r)
        self.registry.register(IngestCollector(db, redis_url))

    def on_batch(self, model: str, inputs: int, padded_tokens: int, seconds: float) -> None:
        self.batch_inputs.labels(model).observe(inputs)
        self.batch_seconds.labels(model).observe(seconds)

    def on_generation(self, model: str, generation: GenerationState) -> None:
        self.completions.labels(model, generation.finish_reason or "cancelled").inc()
        self.completion_tokens.labels(model).inc(generation.completion_tokens)
