"""Table sources that are not in onnxvec's own database, or that cannot take triggers: a table in
another Postgres kept by triggers there, and a table read through a SELECT-only role kept by polling a
changed-at column. Real embedded Postgres (a second database, a second role), real worker, real model."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url

from onnxvec.config import Settings
from onnxvec.infra import embedded
from tests.helpers import onnxvec
from tests.integration.test_table_sync import _documents, _wait


def _contents(engine: Engine, prefix: str) -> dict[str, tuple[str, str | None]]:
    """The source's documents: external id → (state, stored text)."""
    with engine.connect() as conn:
        rows = conn.execute(
            text("SELECT external_id, state, content FROM documents WHERE starts_with(external_id, :p)"), {"p": prefix}
        ).all()
    return {eid: (state, content) for eid, state, content in rows}


def _in_step(engine: Engine, rows: Engine, table: str, prefix: str) -> bool:
    """Every row of `table` (read through `rows`) has a done document holding its body, and no other
    document of the source is left."""
    with rows.connect() as conn:
        bodies = dict(conn.execute(text(f"SELECT id, body FROM {table}")).all())  # noqa: S608 (a test's own name)
    expected = {f"{prefix}{key}": ("done", body) for key, body in bodies.items()}
    return _contents(engine, prefix) == expected


def _admin(endpoints: embedded.Endpoints) -> Engine:
    return create_engine(make_url(endpoints.database_url), isolation_level="AUTOCOMMIT")


def _fresh_database(endpoints: embedded.Endpoints, name: str) -> str:
    """A new, empty database in the embedded Postgres (for onnxvec, another server it reaches by URL)."""
    admin = _admin(endpoints)
    with admin.connect() as conn:
        conn.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        conn.execute(text(f"CREATE DATABASE {name}"))
    admin.dispose()
    return make_url(endpoints.database_url).set(database=name).render_as_string(hide_password=False)


def _drop_database(endpoints: embedded.Endpoints, name: str) -> None:
    admin = _admin(endpoints)
    with admin.connect() as conn:
        conn.execute(text(f"DROP DATABASE {name} WITH (FORCE)"))
    admin.dispose()


@pytest.fixture
def shop(endpoints: embedded.Endpoints) -> Iterator[tuple[str, Engine]]:
    shop_url = _fresh_database(endpoints, "shop")
    remote = create_engine(shop_url)
    yield shop_url, remote
    remote.dispose()
    _drop_database(endpoints, "shop")


def test_a_table_in_another_database_is_kept_by_triggers_there(
    settings: Settings, engine: Engine, shop: tuple[str, Engine], start_worker
) -> None:
    """`--database-url`: the triggers and their queue live beside the table, the documents here; every
    change arrives, an unreachable database is a one-line error that shows no password, and removing
    the source removes the triggers and queued keys over there."""
    url, remote = shop
    with remote.begin() as conn:
        conn.execute(text("CREATE TABLE products (id int PRIMARY KEY, name text, body text)"))
        conn.execute(
            text("INSERT INTO products VALUES (:id, :name, :body)"),
            [
                {"id": i, "name": f"p{i}", "body": f"product {i}: a plain {['cup', 'pan', 'jug'][i % 3]}"}
                for i in range(40)
            ],
        )
    worker = start_worker()
    args = ["--table", "products", "--collection", "shop", "--text-column", "body", "--metadata-columns", "name"]
    unreachable = onnxvec(
        settings, "sources", "add", "gone", *args, "--database-url", "postgresql://someone:s3cret@127.0.0.1:1/none"
    )
    assert unreachable.returncode == 1, unreachable.stderr
    assert "cannot reach the source's database" in unreachable.stderr and "s3cret" not in unreachable.stderr
    assert "Traceback" not in unreachable.stderr and len(unreachable.stderr.strip().splitlines()) == 1
    secret = make_url(url).set(password="hunter2").render_as_string(hide_password=False)  # (trust: it is ignored)
    added = onnxvec(settings, "sources", "add", "shop", *args, "--database-url", secret, "--wait", "--timeout", "120")
    assert added.returncode == 0, added.stderr
    assert _in_step(engine, remote, "products", "shop:")
    with remote.begin() as conn:
        conn.execute(text("UPDATE products SET body = 'a kettle that whistles in C sharp' WHERE id = 7"))
        conn.execute(text("UPDATE products SET name = 'renamed' WHERE id = 8"))  # outside the text
        conn.execute(text("DELETE FROM products WHERE id IN (1, 2)"))
        conn.execute(text("INSERT INTO products VALUES (100, 'new', 'a brand new teapot')"))
        conn.execute(text("UPDATE products SET id = 200 WHERE id = 3"))  # a moved key
    _wait(engine, lambda e: _in_step(e, remote, "products", "shop:"), "changes in the other database", timeout=60)
    with remote.begin() as conn:
        conn.execute(text("TRUNCATE products"))
    _wait(engine, lambda e: not _documents(e, "shop:"), "the TRUNCATE over there", timeout=60)
    with remote.begin() as conn:
        conn.execute(text("INSERT INTO products VALUES (5, 'back', 'a teapot that came back')"))
    _wait(engine, lambda e: _in_step(e, remote, "products", "shop:"), "a row after the TRUNCATE", timeout=60)
    # a source that fails (a renamed column over there) holds up no other, and is back in seconds
    with engine.begin() as conn:
        conn.execute(text("DROP TABLE IF EXISTS public.memos CASCADE"))
        conn.execute(text("CREATE TABLE public.memos (id int PRIMARY KEY, body text)"))
    memos = ["--table", "memos", "--collection", "shop", "--text-column", "body"]
    assert onnxvec(settings, "sources", "add", "memos", *memos).returncode == 0
    with remote.begin() as conn:
        conn.execute(text("ALTER TABLE products RENAME COLUMN body TO old_body"))
        conn.execute(text("INSERT INTO products VALUES (9, 'during', 'a jug written while the column was renamed')"))
    time.sleep(3)  # the failing source has been tried and rests
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO public.memos VALUES (1, 'a memo written while the other source fails')"))
    healthy = _wait(engine, lambda e: _contents(e, "memos:").get("memos:1", ("",))[0] == "done", "memos", timeout=30)
    assert healthy < 10
    with remote.begin() as conn:
        conn.execute(text("ALTER TABLE products RENAME COLUMN old_body TO body"))
    back = _wait(engine, lambda e: _in_step(e, remote, "products", "shop:"), "the failed source, back", timeout=60)
    assert back < 35  # it rests 2, 4, ... up to 30 s between tries
    print(json.dumps({"healthy_source_seconds": round(healthy, 1), "failed_source_back_seconds": round(back, 1)}))
    assert "table source" in worker.log.read_text() and "its changes wait" in worker.log.read_text()
    assert onnxvec(settings, "sources", "rm", "memos", "--drop-embeddings").returncode == 0
    status = json.loads(onnxvec(settings, "sources", "status", "shop").stdout)
    assert status["mode"] == "triggers" and status["queued"] == 0 and "shop" in status["database"]
    assert "hunter2" not in json.dumps(status) and "***" in status["database"]
    with remote.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM public.onnxvec_changes")).scalar_one() == 0
    with engine.connect() as conn:  # the view needs the table and the chunks in one database: none here
        assert conn.execute(text("SELECT to_regclass('public.shop_embeddings')")).scalar_one() is None
    removed = onnxvec(settings, "sources", "rm", "shop", "--drop-embeddings")
    assert removed.returncode == 0, removed.stderr
    with remote.begin() as conn:
        triggers = "SELECT count(*) FROM pg_trigger WHERE tgrelid = 'products'::regclass AND NOT tgisinternal"
        assert conn.execute(text(triggers)).scalar_one() == 0
        conn.execute(text("INSERT INTO products VALUES (6, 'after', 'written after the source went')"))
        assert conn.execute(text("SELECT count(*) FROM public.onnxvec_changes")).scalar_one() == 0
    assert not _documents(engine, "shop:")


def test_polling_a_table_without_triggers_sees_inserts_updates_and_deletes(
    settings: Settings, engine: Engine, endpoints: embedded.Endpoints, start_worker
) -> None:
    """A role that may only SELECT cannot add triggers: that is a clear error naming --poll, and with
    `--poll updated_at` every insert, update and delete arrives, including 700 rows written by one
    statement (one changed-at value for all, more than a batch) and a row with no changed-at."""
    with engine.begin() as conn:
        conn.execute(text("DROP TABLE IF EXISTS public.notes CASCADE"))
        conn.execute(  # as Rails makes it: a timestamp(6) without time zone
            text("CREATE TABLE public.notes (id int PRIMARY KEY, body text, updated_at timestamp(6) DEFAULT now())")
        )
        conn.execute(
            text("INSERT INTO public.notes (id, body) SELECT i, 'note number ' || i FROM generate_series(0, 699) i")
        )
        conn.execute(
            text(
                "DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'onnxvec_reader')"
                " THEN CREATE ROLE onnxvec_reader LOGIN; END IF; END $$"
            )
        )
        conn.execute(text("GRANT SELECT ON public.notes TO onnxvec_reader"))
    reader = make_url(endpoints.database_url).set(username="onnxvec_reader").render_as_string(hide_password=False)
    start_worker(ONNXVEC_POLL_FULL_PASS_SECONDS="3")
    args = ["--table", "notes", "--collection", "notes", "--text-column", "body", "--database-url", reader]
    refused = onnxvec(settings, "sources", "add", "notes", *args)
    assert refused.returncode == 1 and "may not add triggers" in refused.stderr and "--poll" in refused.stderr
    added = onnxvec(settings, "sources", "add", "notes", *args, "--poll", "updated_at", "--wait", "--timeout", "180")
    assert added.returncode == 0, added.stderr
    assert "rows/s" in added.stderr and "ETA" in added.stderr  # the progress lines of --wait
    assert _in_step(engine, engine, "public.notes", "notes:")
    with engine.begin() as conn:  # as the table's owner, as the application would
        conn.execute(
            text(
                "INSERT INTO public.notes (id, body) SELECT i, 'a later note ' || i FROM generate_series(1000, 1004) i"
            )
        )
        conn.execute(
            text("UPDATE public.notes SET body = 'rewritten ' || id, updated_at = now() WHERE id IN (5, 6, 7)")
        )
        conn.execute(text("DELETE FROM public.notes WHERE id BETWEEN 10 AND 13"))
        conn.execute(text("INSERT INTO public.notes VALUES (2000, 'a note with no changed-at', NULL)"))
    _wait(engine, lambda e: _in_step(e, engine, "public.notes", "notes:"), "the polled changes", timeout=60)
    with engine.begin() as conn:  # 600 updates with one changed-at: more than a batch, which no full pass repairs
        conn.execute(text("UPDATE public.notes SET body = 'bulk ' || id, updated_at = now() WHERE id < 600"))
    _wait(engine, lambda e: _in_step(e, engine, "public.notes", "notes:"), "the bulk update", timeout=90)
    with engine.connect() as conn:
        triggers = "SELECT count(*) FROM pg_trigger WHERE tgrelid = 'public.notes'::regclass AND NOT tgisinternal"
        assert conn.execute(text(triggers)).scalar_one() == 0
    status = json.loads(onnxvec(settings, "sources", "status", "notes").stdout)
    assert (status["mode"], status["poll_column"], status["queued"]) == ("poll", "updated_at", 0)
    assert onnxvec(settings, "sources", "rm", "notes", "--drop-embeddings").returncode == 0
    assert not _documents(engine, "notes:")


def test_a_source_whose_database_is_gone_is_removed_with_force(
    settings: Settings, endpoints: embedded.Endpoints
) -> None:
    """`sources rm` refuses while the other database cannot be reached (its triggers would stay there),
    saying how to go on; `--force` removes the source here."""
    lost_url = _fresh_database(endpoints, "lost")
    lost = create_engine(lost_url)
    with lost.begin() as conn:
        conn.execute(text("CREATE TABLE items (id int PRIMARY KEY, body text)"))
        conn.execute(text("INSERT INTO items VALUES (1, 'an item in a database about to vanish')"))
    lost.dispose()
    args = ["--table", "items", "--collection", "lost", "--text-column", "body", "--database-url", lost_url]
    assert onnxvec(settings, "sources", "add", "lost", *args).returncode == 0
    _drop_database(endpoints, "lost")
    refused = onnxvec(settings, "sources", "rm", "lost")
    assert refused.returncode == 1 and "sources rm --force" in refused.stderr, refused.stderr
    assert "Traceback" not in refused.stderr
    status = json.loads(onnxvec(settings, "sources", "status", "lost").stdout)  # still listed, with why
    assert status["queued"] is None and "lost" in status["error"]
    forced = onnxvec(settings, "sources", "rm", "lost", "--force", "--drop-embeddings")
    assert forced.returncode == 0, forced.stderr
    assert "lost" not in onnxvec(settings, "sources", "list").stdout
