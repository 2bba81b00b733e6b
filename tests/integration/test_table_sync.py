"""Table sync against the real embedded Postgres, a real worker process and the real model: the
backfill, every kind of change (INSERT, UPDATE in and outside the text, DELETE, a moved key, TRUNCATE,
a rolled-back INSERT), names that need quoting, and names that try to inject SQL."""

from __future__ import annotations

import json
import random
import re
import subprocess
import time
from collections.abc import Callable

import httpx
import pytest
import redis
from sqlalchemy import Engine, text

from onnxvec.config import Settings
from onnxvec.errors import StoreError
from onnxvec.infra import embedded
from onnxvec.storage import collections
from tests.helpers import WorkerProcess, onnxvec

WORDS = [
    "river",
    "stone",
    "lantern",
    "harbor",
    "meadow",
    "copper",
    "violin",
    "orchard",
    "glacier",
    "ember",
    "canvas",
    "thunder",
]
OTHER_WORDS = ["kite", "falcon", "heron", "sparrow", "owl", "wren"]
ROWS = 10_000
MOVED, GHOST = ROWS + 5, ROWS + 100  # keys no row has


def _body(rng: random.Random, paragraphs: int = 3, words: int = 110) -> str:
    return "\n\n".join(" ".join(rng.choices(WORDS, k=words)) + "." for _ in range(paragraphs))


def _wait(engine: Engine, done: Callable[[Engine], bool], what: str, timeout: float = 240) -> float:
    started = time.monotonic()
    while not done(engine):
        assert time.monotonic() - started < timeout, f"{what}: not done after {timeout} s"
        time.sleep(0.5)
    return time.monotonic() - started


def _settled(engine: Engine) -> bool:
    """Nothing queued in the change queue and no document of the source unfinished."""
    with engine.connect() as conn:
        queued = conn.execute(text("SELECT count(*) FROM table_changes")).scalar_one()
        unfinished = conn.execute(
            text("SELECT count(*) FROM documents WHERE state IN ('pending', 'processing') AND source LIKE 'public.%'")
        ).scalar_one()
    return queued == 0 and unfinished == 0


def _documents(engine: Engine, prefix: str) -> dict[str, dict]:
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT d.external_id, d.state, d.metadata, array_agg(c.id ORDER BY c.ordinal), count(c.id)"
                " FROM documents d LEFT JOIN chunks c ON c.document_id = d.id"
                " WHERE starts_with(d.external_id, :p) GROUP BY d.id"
            ),
            {"p": prefix},
        ).all()
    return {r[0]: {"state": r[1], "metadata": r[2], "chunk_ids": r[3], "chunks": r[4]} for r in rows}


def _chunks_not_once(engine: Engine, collection: str) -> list[str]:
    """Documents of `collection` whose chunks are not each held once: a gap or repeat in the ordinals,
    or a chunk outside the collection's active version."""
    with engine.connect() as conn:
        return (
            conn.execute(
                text(
                    "SELECT d.external_id FROM documents d JOIN collections k ON k.id = d.collection_id"
                    " JOIN chunks c ON c.document_id = d.id WHERE k.name = :name"
                    " GROUP BY d.id, k.active_version_id"
                    " HAVING count(*) <> max(c.ordinal) + 1 OR bool_or(c.version_id <> k.active_version_id)"
                ),
                {"name": collection},
            )
            .scalars()
            .all()
        )


def _chunk_hashes(engine: Engine, keys: range) -> dict[str, set[str]]:
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT d.external_id, c.content_hash FROM documents d JOIN chunks c ON c.document_id = d.id"
                " WHERE d.external_id = ANY(:ids)"
            ),
            {"ids": [f"articles:{key}" for key in keys]},
        ).all()
    found: dict[str, set[str]] = {}
    for external_id, digest in rows:
        found.setdefault(external_id, set()).add(digest)
    return found


def _embedded_chunks(worker: WorkerProcess, since: int) -> tuple[int, int]:
    """Chunks embedded and reused by the worker's tasks logged after byte `since` of its log."""
    log = worker.log.read_text(errors="replace")[since:]
    found = re.findall(r"embedded Outcome\(done=\d+, .*?embedded_chunks=(\d+), reused_chunks=(\d+)\)", log)
    return sum(int(e) for e, _ in found), sum(int(r) for _, r in found)


@pytest.fixture
def articles(engine: Engine) -> None:
    rng = random.Random(3)
    with engine.begin() as conn:
        conn.execute(text("DROP TABLE IF EXISTS public.articles CASCADE"))
        conn.execute(
            text("CREATE TABLE public.articles (id int PRIMARY KEY, title text NOT NULL, body text, price numeric)")
        )
        # short rows (one chunk each), and 20 long ones (several chunks) for the paragraph update
        rows = [
            {
                "id": i,
                "title": f"Article {i}",
                "body": _body(rng, *(3, 110) if 200 <= i < 220 else (1, 30)),
                "price": i % 50,
            }
            for i in range(ROWS)
        ]
        rows[777]["body"] = "The lighthouse keeper counts exactly forty seven gulls every dawn."
        conn.execute(text("INSERT INTO public.articles VALUES (:id, :title, :body, :price)"), rows)


@pytest.mark.slow
def test_a_table_stays_embedded_through_every_change(
    settings: Settings, engine: Engine, embedder, articles: None, start_worker, api
) -> None:
    worker = start_worker()
    added = onnxvec(
        settings,
        "sources",
        "add",
        "articles",
        "--table",
        "public.articles",
        "--collection",
        "articles_sync",
        "--template",
        "{title}\\n\\n{body}",
        "--metadata-columns",
        "price",
    )
    assert added.returncode == 0, added.stderr
    assert f"{ROWS} rows to read" in added.stdout and "key (id), triggers" in added.stdout
    backfill = _wait(engine, _settled, "backfill", timeout=900)
    docs = _documents(engine, "articles:")
    assert len(docs) == ROWS and all(d["state"] == "done" and d["chunks"] >= 1 for d in docs.values())
    assert not _chunks_not_once(engine, "articles_sync")
    listed = {s["id"]: s for s in httpx.get(api.url + "/v1/sources").json()["data"]}
    assert listed["articles"]["table"] == "public.articles" and listed["articles"]["queued"] == 0
    assert listed["articles"]["documents"]["done"] == ROWS and listed["articles"]["mode"] == "triggers"
    assert listed["articles"]["rows_per_second"] > 0  # the backfill's last minute
    missing = httpx.get(api.url + "/v1/sources/nope")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "source_not_found"
    metrics = httpx.get(api.url + "/metrics").text
    assert 'onnxvec_source_lag_seconds{source="articles"} 0.0' in metrics
    assert 'onnxvec_source_queued_rows{source="articles"} 0.0' in metrics
    rate = re.search(r'onnxvec_source_rows_per_second\{source="articles"\} ([0-9.e+-]+)', metrics)
    assert rate and float(rate.group(1)) > 0, metrics[-2000:]
    question = "How many gulls does the lighthouse keeper count?"
    with engine.connect() as conn:  # what a psql user does with the source's view
        nearest = conn.execute(
            text(
                "SELECT id, onnxvec_chunk FROM public.articles_embeddings"
                " ORDER BY onnxvec_embedding <=> CAST(:q AS vector) LIMIT 1"
            ),
            {"q": str(embedder.embed([question]).vectors[0].tolist())},
        ).one()
    assert nearest.id == 777 and "forty seven gulls" in nearest.onnxvec_chunk
    hit = httpx.post(
        api.url + "/v1/search",
        json={"collection": "articles_sync", "query": question, "k": 1},
    ).json()["data"][0]
    assert hit["external_id"] == "articles:777" and hit["source"] == "public.articles"
    assert hit["metadata"] == {"price": 27, "table": "public.articles", "key": [777]}

    # a column outside the text: metadata follows, nothing is embedded again
    before = _documents(engine, "articles:")
    with engine.begin() as conn:
        conn.execute(text("UPDATE public.articles SET price = price + 1000 WHERE id < 100"))
    _wait(engine, lambda e: _documents(e, "articles:5")["articles:5"]["metadata"]["price"] == 1005, "metadata")
    _wait(engine, _settled, "price update")
    after = _documents(engine, "articles:")
    assert all(after[k]["chunk_ids"] == before[k]["chunk_ids"] for k in before), "chunks were rewritten"

    # the last paragraph of 20 long rows: only the chunks holding it are embedded again
    hashes_before = _chunk_hashes(engine, range(200, 220))
    rng = random.Random(11)
    with engine.begin() as conn:
        bodies = dict(conn.execute(text("SELECT id, body FROM public.articles WHERE id BETWEEN 200 AND 219")).all())
        edits = []
        for key, body in bodies.items():
            paragraphs = body.split("\n\n")
            paragraphs[-1] = " ".join(rng.choices(OTHER_WORDS, k=110)) + "."
            edits.append({"id": key, "body": "\n\n".join(paragraphs)})
        mark = len(worker.log.read_text(errors="replace"))
        conn.execute(text("UPDATE public.articles SET body = :body WHERE id = :id"), edits)
    _wait(engine, _settled, "paragraph update")
    embedded, reused = _embedded_chunks(worker, mark)
    hashes_after = _chunk_hashes(engine, range(200, 220))
    changed = sum(len(hashes_after[key] - hashes_before[key]) for key in hashes_after)
    kept = sum(len(hashes_after[key] & hashes_before[key]) for key in hashes_after)
    assert (embedded, reused) == (changed, kept) and 0 < changed < changed + kept, (embedded, reused, changed, kept)

    # DELETE, a moved key, a rolled-back INSERT
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM public.articles WHERE id BETWEEN 300 AND 349"))
        conn.execute(text("UPDATE public.articles SET id = :moved WHERE id = 5"), {"moved": MOVED})
    with engine.connect() as conn:
        rolled = conn.begin()
        conn.execute(text("INSERT INTO public.articles VALUES (:id, 'ghost', 'never committed', 0)"), {"id": GHOST})
        rolled.rollback()
    _wait(engine, lambda e: f"articles:{MOVED}" in _documents(e, f"articles:{MOVED}"), "moved key")
    _wait(engine, _settled, "deletes")
    docs = _documents(engine, "articles:")
    assert not any(f"articles:{i}" in docs for i in range(300, 350)) and "articles:5" not in docs
    assert docs[f"articles:{MOVED}"]["state"] == "done" and docs[f"articles:{MOVED}"]["chunks"] >= 1
    assert f"articles:{GHOST}" not in docs and len(docs) == ROWS - 50
    with engine.connect() as conn:
        orphans = conn.execute(
            text("SELECT count(*) FROM chunks c LEFT JOIN documents d ON d.id = c.document_id WHERE d.id IS NULL")
        ).scalar_one()
    assert orphans == 0

    # TRUNCATE empties what the source embedded
    with engine.begin() as conn:
        conn.execute(text("TRUNCATE public.articles"))
    _wait(engine, lambda e: not _documents(e, "articles:"), "truncate")
    status = onnxvec(settings, "sources", "status", "articles")
    assert status.returncode == 0 and json.loads(status.stdout)["queued"] == 0
    removed = onnxvec(settings, "sources", "rm", "articles", "--drop-embeddings")
    assert removed.returncode == 0, removed.stderr
    with engine.begin() as conn:  # the table works on without its triggers, and the view is gone
        assert conn.execute(text("SELECT to_regclass('public.articles_embeddings')")).scalar_one() is None
        conn.execute(text("INSERT INTO public.articles VALUES (1, 'after', 'the source is gone', 0)"))
        assert conn.execute(text("SELECT count(*) FROM table_changes")).scalar_one() == 0
    figures = {"rows": ROWS, "backfill_seconds": round(backfill, 1), "rows_per_s": round(ROWS / backfill, 1)}
    print(json.dumps(figures | {"paragraph_update": {"chunks_embedded": embedded, "chunks_reused": reused}}))


def _add_odd(settings: Settings, column: str, *extra: str) -> subprocess.CompletedProcess[str]:
    """`sources add` over a table whose name holds quotes and spaces."""
    table = '"odd ""quoted"" table"'
    return onnxvec(
        settings, "sources", "add", "odd", "--table", table, "--collection", "odd_sync", "--text-column", column, *extra
    )


def test_quoted_names_work_and_injection_fails_cleanly(settings: Settings, engine: Engine, start_worker) -> None:
    with engine.begin() as conn:
        conn.execute(text('DROP TABLE IF EXISTS public."odd ""quoted"" table" CASCADE'))
        conn.execute(text('CREATE TABLE public."odd ""quoted"" table" ("select" text, "from" int PRIMARY KEY)'))
        conn.execute(text('INSERT INTO public."odd ""quoted"" table" VALUES (\'a quoted row\', 1), (\'another\', 2)'))
    for table in ("articles; DROP TABLE public.articles", 'public."odd"; DROP TABLE x; --"'):
        refused = onnxvec(
            settings, "sources", "add", "evil", "--table", table, "--collection", "odd_sync", "--text-column", "x"
        )
        assert refused.returncode == 1 and refused.stderr.startswith("error: "), refused.stderr
        assert len(refused.stderr.strip().splitlines()) == 1
    for column, reason in (("nope", "has no column 'nope'"), ("select); DROP TABLE x; --", "has no column")):
        refused = _add_odd(settings, column)
        assert refused.returncode == 1 and reason in refused.stderr, refused.stderr
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM table_sources WHERE name IN ('evil', 'odd')")).scalar_one() == 0
    start_worker()
    added = _add_odd(settings, "select", "--wait", "--timeout", "120")
    assert added.returncode == 0, added.stderr
    docs = _documents(engine, "odd:")
    assert set(docs) == {"odd:1", "odd:2"} and all(d["state"] == "done" for d in docs.values())
    with engine.begin() as conn:
        conn.execute(text('UPDATE public."odd ""quoted"" table" SET "select" = \'changed\' WHERE "from" = 2'))
    _wait(engine, lambda e: _documents(e, "odd:")["odd:2"]["chunk_ids"] != docs["odd:2"]["chunk_ids"], "update")
    assert onnxvec(settings, "sources", "rm", "odd", "--drop-embeddings").returncode == 0
    assert not _documents(engine, "odd:")


@pytest.mark.slow
def test_a_backfill_survives_kill_flushall_and_a_postgres_restart(
    settings: Settings, engine: Engine, endpoints, start_worker
) -> None:
    """Two workers; mid-backfill one is killed (-9), Redis is flushed and Postgres restarted, with rows
    still being written: every row ends embedded exactly once and nothing is left queued."""
    rows = 3000
    rng = random.Random(5)
    with engine.begin() as conn:
        conn.execute(text("DROP TABLE IF EXISTS public.faulted CASCADE"))
        conn.execute(text("CREATE TABLE public.faulted (id int PRIMARY KEY, body text)"))
        conn.execute(
            text("INSERT INTO public.faulted VALUES (:id, :body)"),
            [{"id": i, "body": _body(rng, 1, 30)} for i in range(rows)],
        )
    first = start_worker(ONNXVEC_THREADS="1")
    workers = [first, start_worker(ONNXVEC_THREADS="1")]
    added = onnxvec(
        settings, "sources", "add", "faulted", "--table", "faulted", "--collection", "faulted", "--text-column", "body"
    )
    assert added.returncode == 0, added.stderr

    def done_at_least(count: int) -> Callable[[Engine], bool]:
        return lambda e: sum(d["state"] == "done" for d in _documents(e, "faulted:").values()) >= count

    _wait(engine, done_at_least(300), "first rows")
    started = time.monotonic()
    first.kill()  # SIGKILL mid-batch: a sync transaction or an embedding claim is cut off
    workers.append(start_worker(ONNXVEC_THREADS="1"))
    _wait(engine, done_at_least(900), "after the kill")
    redis.Redis.from_url(endpoints.redis_url).flushall()
    with engine.begin() as conn:  # writes go on meanwhile
        conn.execute(text("INSERT INTO public.faulted VALUES (:id, 'a row written during the faults')"), {"id": rows})
    _wait(engine, done_at_least(1500), "after FLUSHALL")
    assert embedded.stop_postgres(settings)
    deadline = time.monotonic() + 60
    while not any("transient error" in w.log.read_text(errors="replace") for w in workers[1:]):
        assert time.monotonic() < deadline, workers[1].log.read_text()[-3000:]
        time.sleep(0.2)
    assert embedded.start_postgres(settings) == endpoints.database_url
    _wait(engine, _settled, "after the Postgres restart", timeout=300)
    seconds = time.monotonic() - started
    docs = _documents(engine, "faulted:")
    assert len(docs) == rows + 1 and all(d["state"] == "done" and d["chunks"] >= 1 for d in docs.values())
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM table_changes")).scalar_one() == 0
    assert not _chunks_not_once(engine, "faulted")
    assert onnxvec(settings, "sources", "rm", "faulted", "--drop-embeddings").returncode == 0
    print(json.dumps({"rows": rows + 1, "faults": "kill -9, FLUSHALL, postgres restart", "seconds": round(seconds, 1)}))


def test_a_composite_key_names_its_rows(settings: Settings, engine: Engine, start_worker) -> None:
    """`--id-column a,b`: a row's document id holds both values; updates and deletes find it."""
    with engine.begin() as conn:
        conn.execute(text("DROP TABLE IF EXISTS public.pairs CASCADE"))
        conn.execute(
            text(
                "CREATE TABLE public.pairs (shop int NOT NULL, sku text, note text, weight numeric(6, 2) NOT NULL,"
                " UNIQUE (shop, sku), UNIQUE (shop, weight))"
            )
        )
        conn.execute(text("INSERT INTO public.pairs VALUES (1, 'x', 'a blue kettle', 1), (2, 'x', 'a red kettle', 2)"))
    keyless = onnxvec(
        settings, "sources", "add", "pairs", "--table", "pairs", "--collection", "pairs", "--text-column", "note"
    )
    assert keyless.returncode == 1 and "has no primary key; name the key with --id-column" in keyless.stderr
    loose = onnxvec(settings, "sources", "add", "pairs", "--table", "pairs", "--collection", "pairs",
                    "--text-column", "note", "--id-column", "shop")  # fmt: skip
    assert loose.returncode == 1 and "(shop) is not a unique key of public.pairs" in loose.stderr, loose.stderr
    base = ["--table", "pairs", "--collection", "pairs", "--text-column", "note"]
    nullable = onnxvec(settings, "sources", "add", "pairs", *base, "--id-column", "shop,sku")
    assert nullable.returncode == 1 and "'sku' of public.pairs may be NULL" in nullable.stderr, nullable.stderr
    inexact = onnxvec(settings, "sources", "add", "pairs", *base, "--id-column", "shop,weight")
    assert inexact.returncode == 1 and "is numeric(6,2): a key must compare exactly" in inexact.stderr
    with engine.begin() as conn:
        conn.execute(text("ALTER TABLE public.pairs ALTER COLUMN sku SET NOT NULL"))
    start_worker()
    args = [*base, "--id-column", "shop,sku"]
    added = onnxvec(settings, "sources", "add", "pairs", *args, "--wait", "--timeout", "120")
    assert added.returncode == 0 and "key (shop, sku)" in added.stdout, added.stderr
    docs = _documents(engine, "pairs:")
    assert set(docs) == {'pairs:[1, "x"]', 'pairs:[2, "x"]'}
    assert docs['pairs:[1, "x"]']["metadata"]["key"] == [1, "x"]
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM public.pairs WHERE shop = 2"))
        conn.execute(text("UPDATE public.pairs SET sku = 'y' WHERE shop = 1"))
    _wait(engine, lambda e: set(_documents(e, "pairs:")) == {'pairs:[1, "y"]'}, "composite key changes")
    _wait(engine, _settled, "composite key changes")
    assert onnxvec(settings, "sources", "rm", "pairs", "--drop-embeddings").returncode == 0


def test_a_row_that_cannot_be_rendered_fails_alone(settings: Settings, engine: Engine, start_worker) -> None:
    """NaN and Infinity in a metadata column, a template whose format spec does not suit the column:
    those rows are failed documents with their reason, the others are embedded, nothing stays queued,
    and the collection cannot be dropped from under its source. Once the column is altered to suit
    (DDL: no trigger fires), `onnxvec retry` reads those rows again and they are embedded."""
    with engine.begin() as conn:
        conn.execute(text("DROP TABLE IF EXISTS public.poison CASCADE"))
        conn.execute(text("CREATE TABLE public.poison (id int PRIMARY KEY, title text, tags int[], price numeric)"))
        conn.execute(
            text(
                "INSERT INTO public.poison VALUES (1, 'fine', '{1}', 2.5), (2, 'nan', '{2}', 'NaN'),"
                " (3, 'infinite', '{3}', 'Infinity'), (4, 'also fine', NULL, 7)"
            )
        )
    start_worker()
    template = "{title} {price}"
    added = onnxvec(
        settings, "sources", "add", "poison", "--table", "poison", "--collection", "poison",
        "--template", template, "--metadata-columns", "price,tags",
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    _wait(engine, _settled, "poison rows")
    docs = _documents(engine, "poison:")
    assert {k: d["state"] for k, d in docs.items()} == {f"poison:{i}": "done" for i in range(1, 5)}
    assert docs["poison:2"]["metadata"]["price"] == "NaN" and docs["poison:1"]["metadata"]["price"] == 2.5
    with engine.begin() as conn:  # a format spec that a list cannot take: that row alone fails
        conn.execute(text("UPDATE public.poison SET title = 'changed'"))
        conn.execute(text("CREATE OR REPLACE VIEW public.poison_view AS SELECT * FROM public.poison"))
    assert onnxvec(settings, "sources", "rm", "poison").returncode == 0
    bad = onnxvec(
        settings, "sources", "add", "poison", "--table", "poison", "--collection", "poison",
        "--template", "{title} {tags:>10}",
    )  # fmt: skip
    assert bad.returncode == 0, bad.stderr
    _wait(engine, _settled, "poison update")
    docs = _documents(engine, "poison:")
    assert docs["poison:4"]["state"] == "done"  # tags NULL renders as ""
    assert all(docs[f"poison:{i}"]["state"] == "failed" for i in (1, 2, 3))
    with engine.connect() as conn:
        errors = conn.execute(text("SELECT last_error FROM documents WHERE external_id = 'poison:1'")).scalar_one()
    assert "cannot be rendered" in errors and "TypeError" in errors
    refused = onnxvec(
        settings, "sources", "add", "v", "--table", "poison_view", "--collection", "v", "--text-column", "title"
    )
    assert refused.returncode == 1 and "is not a table" in refused.stderr, refused.stderr
    with engine.begin() as conn, pytest.raises(StoreError, match="a table source feeds 'poison'"):
        collections.drop_collection(conn, "poison")
    with engine.begin() as conn:  # the column now takes the format spec; DDL fires no row trigger
        conn.execute(text("DROP VIEW public.poison_view"))
        conn.execute(text("ALTER TABLE public.poison ALTER COLUMN tags TYPE text USING array_to_string(tags, ',')"))
    retried = onnxvec(settings, "retry", "--collection", "poison")
    assert retried.returncode == 0 and "3 table rows to read again" in retried.stdout, retried.stdout
    _wait(engine, _settled, "the retried rows")
    docs = _documents(engine, "poison:")
    assert {k: d["state"] for k, d in docs.items()} == {f"poison:{i}": "done" for i in range(1, 5)}
    assert onnxvec(settings, "sources", "rm", "poison", "--drop-embeddings").returncode == 0
    with engine.begin() as conn:
        collections.drop_collection(conn, "poison")


def test_timestamp_keys_written_from_another_time_zone(settings: Settings, engine: Engine, start_worker) -> None:
    """A timestamptz key written by sessions in New York and Tokyo is the same row to the worker (keys
    compare in UTC): its document is created, updated in place and removed, never mistaken for a
    deleted row."""
    with engine.begin() as conn:
        conn.execute(text("DROP TABLE IF EXISTS public.events CASCADE"))
        conn.execute(text("CREATE TABLE public.events (at timestamptz PRIMARY KEY, note text)"))
    start_worker()
    args = ["--table", "events", "--collection", "events", "--text-column", "note"]
    assert onnxvec(settings, "sources", "add", "events", *args).returncode == 0
    with engine.begin() as conn:
        conn.execute(text("SET LOCAL TimeZone = 'America/New_York'"))
        conn.execute(text("INSERT INTO public.events VALUES ('2026-11-30 09:00:00+00', 'the launch window opens')"))
    _wait(engine, lambda e: [d["state"] for d in _documents(e, "events:").values()] == ["done"], "insert")
    (first,) = _documents(engine, "events:")
    with engine.begin() as conn:
        conn.execute(text("SET LOCAL TimeZone = 'Asia/Tokyo'"))
        conn.execute(
            text("UPDATE public.events SET note = 'the launch window closes' WHERE at = '2026-11-30 09:00+00'")
        )
    _wait(engine, lambda e: _documents(e, "events:")[first]["chunk_ids"] != [], "update")
    _wait(engine, _settled, "update")
    docs = _documents(engine, "events:")
    assert list(docs) == [first] and docs[first]["state"] == "done"  # the same document, not a new one
    with engine.connect() as conn:
        assert (
            "closes"
            in conn.execute(text("SELECT content FROM documents WHERE external_id = :e"), {"e": first}).scalar_one()
        )
    with engine.begin() as conn:
        conn.execute(text("SET LOCAL TimeZone = 'Asia/Tokyo'"))
        conn.execute(text("DELETE FROM public.events"))
    _wait(engine, lambda e: not _documents(e, "events:"), "delete")
    assert onnxvec(settings, "sources", "rm", "events", "--drop-embeddings").returncode == 0
