"""`onnxvec import`: LangChain PGVector, LangChain PGVectorStore and LlamaIndex PGVectorStore tables,
built with plain SQL as those libraries lay them out, in another database of the embedded Postgres; their
vectors are real embeddings of their texts by the default model (stored unnormalized, as some models
leave them). Imported through the CLI, then searched."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from functools import partial

import numpy as np
import pytest
from sqlalchemy import Engine, create_engine, text

from onnxvec.config import Settings
from onnxvec.embedding.engine import EmbeddingEngine
from onnxvec.errors import CollectionNotFound
from onnxvec.sources import vectorstores
from onnxvec.sources.files import SourceDocument
from onnxvec.storage import chunks, collections, documents
from tests.helpers import onnxvec

TEXTS = [
    "The lighthouse keeper climbed the spiral stairs to light the lamp at dusk.",
    "Sourdough bread needs a starter that is fed with flour and water every day.",
    "The goalkeeper dived to the left and saved the penalty kick.",
    "Volcanoes erupt when magma pressure builds up beneath the crust.",
    "Our invoice is payable within thirty days of the delivery date.",
    "The violinist tuned her instrument before the concert began.",
    "Honeybees communicate the location of flowers with a waggle dance.",
    "The spacecraft entered orbit around Mars after a seven month journey.",
    "Reset your password from the account settings page.",
    "The glacier has retreated two kilometres over the past century.",
    "A chess grandmaster can calculate many moves ahead.",
    "Tomatoes grow best in full sun with regular watering.",
    "The train to the airport leaves every fifteen minutes.",
    "Penguins huddle together to survive the Antarctic winter.",
    "The database backup runs every night at two in the morning.",
    "The marathon runner crossed the finish line in record time.",
    "Origami is the Japanese art of folding paper into shapes.",
    "The museum displays dinosaur skeletons in its main hall.",
    "Dark roast coffee beans are roasted longer than light roast ones.",
    "The judge adjourned the trial until next Monday.",
]
QUERY, ANSWER = "how do bees tell each other where flowers are", 6


@pytest.fixture(scope="module")
def foreign(new_database: Callable[[str], str]) -> tuple[str, Engine]:
    """Another database holding the stores: its URL (what --database-url gets) and an engine on it."""
    url = new_database("import_stores")
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("CREATE EXTENSION IF NOT EXISTS vector"))
    return url, engine


@pytest.fixture(scope="module")
def vectors(embedder: EmbeddingEngine) -> list[str]:
    """The texts' embeddings by the default model, scaled by 3 (an unnormalized store), as vector literals."""
    return [json.dumps((3 * v).tolist()) for v in embedder.embed(TEXTS).vectors]


def _metadata(i: int) -> dict:
    return {"topic": f"t{i}", "page": i}


def langchain_pgvector(conn, vectors: list[str], name: str) -> None:
    """langchain_postgres.vectorstores.PGVector: two shared tables, rows of collection `name`; a row
    without a vector and one without text, which the import skips."""
    conn.execute(
        text(
            "CREATE TABLE IF NOT EXISTS langchain_pg_collection (uuid uuid PRIMARY KEY, name varchar NOT NULL UNIQUE,"
            " cmetadata json);"
            "CREATE TABLE IF NOT EXISTS langchain_pg_embedding (id varchar PRIMARY KEY,"
            " collection_id uuid REFERENCES langchain_pg_collection (uuid) ON DELETE CASCADE, embedding vector,"
            " document varchar, cmetadata jsonb)"
        )
    )
    cid, other = uuid.uuid4(), uuid.uuid4()
    conn.execute(
        text("INSERT INTO langchain_pg_collection VALUES (:a, :name, NULL), (:b, :name || '-other', NULL)"),
        {"a": cid, "b": other, "name": name},
    )
    rows = [
        (f"{name}-{i}", cid, v, t, json.dumps(_metadata(i)))
        for i, (t, v) in enumerate(zip(TEXTS, vectors, strict=True))
    ]
    rows += [(f"{name}-novector", cid, None, "A row whose embedding is missing.", "{}")]
    rows += [(f"{name}-notext", cid, vectors[0], None, "{}"), (f"{name}-elsewhere", other, vectors[1], "x", "{}")]
    for row in rows:
        conn.execute(
            text("INSERT INTO langchain_pg_embedding VALUES (:id, :c, CAST(:v AS vector), :t, CAST(:m AS jsonb))"),
            dict(zip(("id", "c", "v", "t", "m"), row, strict=True)),
        )


def langchain_pgvectorstore(conn, vectors: list[str], name: str, dims: int = 384, column: str = "") -> None:
    """langchain_postgres v2 PGVectorStore (PGEngine.init_vectorstore_table's defaults): one table; its
    embedding column a vector(dims), or another type pgvector casts to vector (`column`)."""
    column = column or f"vector({dims})"
    conn.execute(
        text(
            f'CREATE TABLE "{name}" (langchain_id uuid PRIMARY KEY, content text NOT NULL,'
            f" embedding {column} NOT NULL, langchain_metadata json)"
        )
    )
    for i, (t, v) in enumerate(zip(TEXTS, vectors, strict=True)):
        conn.execute(
            text(f'INSERT INTO "{name}" VALUES (:id, :t, CAST(CAST(:v AS vector) AS {column}), CAST(:m AS json))'),
            {"id": uuid.uuid5(uuid.NAMESPACE_URL, f"{name}/{i}"), "t": t, "v": v, "m": json.dumps(_metadata(i))},
        )


def llamaindex_pgvectorstore(conn, vectors: list[str], name: str) -> None:
    """llama-index-vector-stores-postgres PGVectorStore (get_data_model, hybrid search on): data_<name>;
        its metadata_ carries the node again under _node_content and _node_type; one more row's metadata
    holds a NUL, which the import skips."""
    conn.execute(
        text(
            f'CREATE TABLE "data_{name}" (id bigserial PRIMARY KEY, text varchar NOT NULL, metadata_ json,'
            " node_id varchar, embedding vector(384),"
            " text_search_tsv tsvector GENERATED ALWAYS AS (to_tsvector('english', text)) STORED)"
        )
    )
    for i, (t, v) in enumerate(zip(TEXTS, vectors, strict=True)):
        meta = _metadata(i) | {"_node_content": json.dumps({"text": t}), "_node_type": "TextNode", "doc_id": "d"}
        conn.execute(
            text(
                f'INSERT INTO "data_{name}" (text, metadata_, node_id, embedding) VALUES (:t, CAST(:m AS json), :n,'
                " CAST(:v AS vector))"
            ),  # fmt: skip
            {"t": t, "m": json.dumps(meta), "n": f"node-{i}", "v": v},
        )
    conn.execute(  # json keeps a NUL escape that jsonb (onnxvec's metadata) cannot hold
        text(
            f'INSERT INTO "data_{name}" (text, metadata_, node_id, embedding) VALUES (:t, :m, :n, CAST(:v AS vector))'
        ),
        {"t": TEXTS[0], "m": '{"note": "\\u0000"}', "n": "node-nul", "v": vectors[0]},
    )


STORES = {
    "lc-pgvector": ("langchain", langchain_pgvector, "skipped 1 no text, 1 no vector"),
    "lc-store": ("langchain", langchain_pgvectorstore, "skipped 0"),
    "lc-store-real": ("langchain", partial(langchain_pgvectorstore, column="real[]"), "skipped 0"),  # forks
    "lc-store-halfvec": ("langchain", partial(langchain_pgvectorstore, column="halfvec(384)"), "skipped 0"),
    "llama": ("llamaindex", llamaindex_pgvectorstore, "skipped 1 metadata jsonb cannot hold"),
}


def _import(settings: Settings, url: str, library: str, table: str, collection: str, *extra: str):
    return onnxvec(
        settings, "import", "--from", library, "--database-url", url, "--table", table, "--collection", collection,
        *extra,
    )  # fmt: skip


def _collection_absent(engine: Engine, name: str) -> bool:
    with engine.connect() as conn:
        try:
            collections.get_collection(conn, name)
        except CollectionNotFound:
            return True
    return False


@pytest.mark.parametrize("store", list(STORES))
def test_import_then_search_and_reimport(
    settings: Settings, engine: Engine, foreign: tuple[str, Engine], vectors: list[str], store: str
) -> None:
    url, source = foreign
    library, build, skipped = STORES[store]
    name = store.replace("-", "_")
    with source.begin() as conn:
        build(conn, vectors, name)
    collection = f"imported-{store}"

    done = _import(settings, url, library, name, collection)
    assert done.returncode == 0, done.stderr
    assert f"20 imported, 0 updated, 0 unchanged, {skipped}" in done.stdout, done.stdout

    found = onnxvec(settings, "search", QUERY, "--collection", collection, "--mode", "vector", "-k", "1", "--json")
    assert found.returncode == 0, found.stderr
    [hit] = json.loads(found.stdout)
    assert hit["text"] == TEXTS[ANSWER]
    assert hit["metadata"] == _metadata(ANSWER) | ({"doc_id": "d"} if library == "llamaindex" else {})

    with engine.connect() as conn:  # stored as the worker stores the model's vectors: unit length
        col = collections.get_collection(conn, collection)
        stored = chunks.existing_vectors(conn, [hit["document_id"]], col.model)
        assert [float(np.linalg.norm(v)) for v in stored.values()] == pytest.approx([1.0], abs=1e-5)
        # `ingest` of the same text and metadata finds nothing to do
        again = documents.register(conn, col, [SourceDocument(hit["external_id"], "x", TEXTS[ANSWER], hit["metadata"])])
        assert (again.queued, again.unchanged) == ([], 1)
        conn.rollback()

    again = _import(settings, url, library, name, collection)
    assert again.returncode == 0, again.stderr
    assert f"0 imported, 0 updated, 20 unchanged, {skipped}" in again.stdout, again.stdout


def test_changed_row_is_updated(settings: Settings, engine: Engine, foreign: tuple[str, Engine], vectors) -> None:
    url, source = foreign
    with source.begin() as conn:
        langchain_pgvectorstore(conn, vectors, "changing")
    assert _import(settings, url, "langchain", "changing", "imported-changing").returncode == 0
    with source.begin() as conn:
        conn.execute(text("""UPDATE changing SET langchain_metadata = '{"topic": "new"}' WHERE content = :t"""),
                     {"t": TEXTS[0]})  # fmt: skip
    done = _import(settings, url, "langchain", "changing", "imported-changing")
    assert "0 imported, 1 updated, 19 unchanged" in done.stdout, done.stdout
    with engine.connect() as conn:
        count = conn.execute(
            text("SELECT count(*) FROM documents d JOIN collections c ON c.id = d.collection_id WHERE c.name = :n"),
            {"n": "imported-changing"},
        ).scalar_one()
    assert count == 20


def test_wrong_dims_refused_before_writing(
    settings: Settings, engine: Engine, foreign: tuple[str, Engine], vectors: list[str]
) -> None:
    url, source = foreign
    small = [json.dumps(np.random.default_rng(i).normal(size=16).tolist()) for i in range(len(TEXTS))]
    with source.begin() as conn:
        langchain_pgvectorstore(conn, small, "small_vectors", dims=16)
    done = _import(settings, url, "langchain", "small_vectors", "imported-small")
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        "error: public.small_vectors holds 16-d vectors; all-MiniLM-L6-v2 makes 384-d vectors:"
        " import into a collection of a model of that size"
    ]
    assert _collection_absent(engine, "imported-small")


def test_another_models_vectors_refused(settings: Settings, engine: Engine, foreign: tuple[str, Engine]) -> None:
    url, source = foreign
    rng = np.random.default_rng(7)
    random = [json.dumps(rng.normal(size=384).tolist()) for _ in TEXTS]
    with source.begin() as conn:
        llamaindex_pgvectorstore(conn, random, "random_vectors")
    done = _import(settings, url, "llamaindex", "random_vectors", "imported-random")
    assert done.returncode == 1
    [line] = done.stderr.strip().splitlines()
    assert line.startswith("error: the vectors of public.data_random_vectors are not all-MiniLM-L6-v2's")
    assert "mean cosine of" in line and "--no-verify" in line
    assert _collection_absent(engine, "imported-random")

    unchecked = _import(settings, url, "llamaindex", "random_vectors", "imported-random", "--no-verify")
    assert unchecked.returncode == 0, unchecked.stderr
    assert "(not checked): 20 imported" in unchecked.stdout


def test_missing_store_is_one_line(settings: Settings, foreign: tuple[str, Engine], vectors: list[str]) -> None:
    url, source = foreign
    with source.begin() as conn:  # PGVector's tables exist (another collection): the collection is what is missing
        langchain_pgvector(conn, vectors, "present")
    for library, message in [
        ("llamaindex", "error: no LlamaIndex PGVectorStore table data_nowhere (or nowhere) in schema public"),
        ("langchain", "error: no LangChain PGVector collection 'nowhere' in public.langchain_pg_collection"),
    ]:
        done = _import(settings, url, library, "nowhere", "imported-missing")
        assert done.returncode == 1
        assert done.stderr.strip().splitlines() == [message]


def test_pages_cover_every_row_once(foreign: tuple[str, Engine], vectors: list[str]) -> None:
    """Keyset pages of 3 rows: every row of the collection exactly once, in key order, none of another."""
    _, source = foreign
    with source.begin() as conn:
        langchain_pgvector(conn, vectors, "paged")
    with source.connect() as conn:
        raw = chunks.vector_connection(conn)
        pages = list(vectorstores.read(raw, vectorstores.locate(raw, "langchain", "paged"), batch=3))
    ids = [row.external_id for page in pages for row in page]
    assert [len(page) for page in pages] == [3] * 7 + [1]
    assert ids == sorted(f"paged-{i}" for i in [*range(20), "novector", "notext"])
