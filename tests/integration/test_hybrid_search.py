"""/v1/search in text and hybrid mode over a real collection (tsvectors written by write_chunks): what
only full text finds, the metadata filter inside both legs, queries without words, chat's mode."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest
from sqlalchemy import Engine, text

from onnxvec.config import Settings
from onnxvec.embedding.engine import EmbeddingEngine
from onnxvec.infra import db
from onnxvec.storage import chunks, collections
from tests.helpers import onnxvec, small_collection

DOCS = [  # (text, metadata)
    ("The nightly importer stopped and its log says ERR-7781: the disk had filled up.", {"team": "ops"}),
    ("Disk space alerts fire when a volume is more than ninety percent full.", {"team": "ops"}),
    ("Rotate the TLS certificates of the load balancer every ninety days.", {"team": "ops"}),
    ("Bread is baked with flour, water and salt.", {"team": "ops"}),
    ("The billing export failed again: the billing export gives up after three failed attempts.", {"team": "billing"}),
    ("When the billing export fails, its log file names the invoice that failed.", {"team": "billing"}),
    ("Invoices of the billing export are sent on the first day of each month.", {"team": "billing"}),
    ("Why the billing export failed: timeouts talking to the payment provider.", {"team": "billing"}),
    ("ERR-1203 means that the password has expired.", {"team": "ops"}),
    ("ERR-4410 means that the upload was too large.", {"team": "ops"}),
]
OPS = {f"doc-{i}" for i, (_, meta) in enumerate(DOCS) if meta["team"] == "ops"}
NAME = "hybrid-search"


@pytest.fixture(scope="module")
def collection(engine: Engine, embedder: EmbeddingEngine) -> collections.Collection:
    return small_collection(engine, embedder, NAME, DOCS)


def _search(server, **body) -> httpx.Response:
    return httpx.post(server.url + "/v1/search", json={"collection": NAME, **body})


def _ids(response: httpx.Response) -> list[str]:
    assert response.status_code == 200, response.text
    return [hit["external_id"] for hit in response.json()["data"]]


def test_an_identifier_only_full_text_finds(api, collection: collections.Collection) -> None:
    """The embedding ranks the other ERR- codes above ERR-7781; full text ranks its chunk first, and
    fusion lifts it above where the vector leg put it."""
    by_vector = _ids(_search(api, query="ERR-7781", k=3, mode="vector"))
    assert by_vector.index("doc-0") == 2
    by_text = _search(api, query="ERR-7781", k=10, mode="text").json()
    assert [hit["external_id"] for hit in by_text["data"]] == ["doc-0", "doc-8", "doc-9"]  # only they hold a word
    assert by_text["mode"] == "text" and by_text["usage"]["prompt_tokens"] == 0
    assert all(hit["distance"] is None and hit["score"] > 0 for hit in by_text["data"])
    hybrid = _search(api, query="ERR-7781", k=3, mode="hybrid").json()
    assert [hit["external_id"] for hit in hybrid["data"]].index("doc-0") == 1
    assert hybrid["mode"] == "hybrid" and all(hit["distance"] is not None for hit in hybrid["data"])
    scores = [hit["score"] for hit in hybrid["data"]]
    assert scores == sorted(scores, reverse=True) and scores[0] == pytest.approx(1 / 61 + 1 / 62)


def test_text_matches_any_word_not_every_word(api, collection: collections.Collection) -> None:
    """No chunk holds every word of the question ("aborted" is not in it); one of them finds it."""
    assert _ids(_search(api, query="which importer aborted during the night?", mode="text")) == ["doc-0"]


def test_the_filter_holds_on_both_legs_before_fusion(start_api: Callable, collection: collections.Collection) -> None:
    """Billing documents rank first on each leg; filtered out, they never appear, and ops documents
    that both legs rank below them still do. With 2 candidates per leg, a filter applied after fusion
    would have been left with no ops document at all."""
    server = start_api(hybrid_candidates=2)
    query = "billing export failed ERR-7781"
    for mode in ("vector", "text"):
        assert not OPS & set(_ids(_search(server, query=query, k=3, mode=mode)))
    ops = {"team": "ops"}
    assert _ids(_search(server, query=query, k=10, mode="text", filter=ops)) == ["doc-0", "doc-8", "doc-9"]
    assert set(_ids(_search(server, query=query, k=10, mode="vector", filter=ops))) == OPS
    hybrid = _ids(_search(server, query=query, k=2, mode="hybrid", filter=ops))
    assert hybrid[0] == "doc-0" and len(hybrid) == 2 and set(hybrid) <= OPS


def test_stop_words_only(api, collection: collections.Collection) -> None:
    """No words to match: text mode finds nothing (not an error); hybrid is the vector leg alone."""
    assert _ids(_search(api, query="the and of", mode="text")) == []
    vector = _ids(_search(api, query="the and of", k=5, mode="vector"))
    assert _ids(_search(api, query="the and of", k=5, mode="hybrid")) == vector and len(vector) == 5


@pytest.mark.parametrize(
    ("query", "modes"),
    [
        ("O'Reilly's C:\\temp\\ | & ! ( :* <-> 'billing'", ("text", "hybrid")),  # words, not tsquery syntax
        ("billing\x00export", ("text", "hybrid")),  # NUL (Postgres text cannot hold it) separates words
        # 2.3 MB, past a tsvector's 1 MB: only the start is read (not embedded: tokenizing it takes seconds)
        ("billing " + " ".join(f"w{i}" for i in range(300_000)), ("text",)),
    ],
)
def test_any_query_text_is_words(api, collection: collections.Collection, query: str, modes: tuple[str, ...]) -> None:
    for mode in modes:
        response = _search(api, query=query, k=4, mode=mode)
        assert set(_ids(response)) == {"doc-4", "doc-5", "doc-6", "doc-7"}, mode


def test_weights_reorder_the_fusion(api, collection: collections.Collection) -> None:
    query = "disk filled up ERR-7781"
    text_only = _ids(_search(api, query=query, k=3, mode="text"))
    vector_only = _ids(_search(api, query=query, k=3, mode="vector"))
    assert _ids(_search(api, query=query, k=3, mode="hybrid", vector_weight=0)) == text_only
    assert _ids(_search(api, query=query, k=3, mode="hybrid", text_weight=0)) == vector_only
    assert text_only != vector_only


def test_the_mode_defaults_to_the_setting(api, start_api: Callable, collection: collections.Collection) -> None:
    """vector unless ONNXVEC_SEARCH_MODE says otherwise (README, Search modes: measured on bench/rag.py)."""
    default = _search(api, query="ERR-7781", k=3).json()
    top = default["data"][0]
    assert default["mode"] == "vector" and top["score"] == pytest.approx(1 - top["distance"])  # cosine similarity
    assert default["data"] == _search(api, query="ERR-7781", k=3, mode="vector").json()["data"]
    hybrid = _search(start_api(search_mode="hybrid"), query="ERR-7781", k=3).json()
    assert hybrid["mode"] == "hybrid"
    assert hybrid["data"] == _search(api, query="ERR-7781", k=3, mode="hybrid").json()["data"]


@pytest.mark.parametrize(
    ("field", "value"),
    [("mode", "semantic"), ("mode", 1), ("vector_weight", -1), ("text_weight", "high"), ("rrf_k", 0)],
)
def test_bad_search_options_are_400(api, collection: collections.Collection, field: str, value: object) -> None:
    response = _search(api, query="x", **{field: value})
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == field and response.json()["error"]["type"] == "invalid_request_error"


def test_collections_say_their_language(api, engine: Engine, collection: collections.Collection) -> None:
    listed = {c["id"]: c for c in httpx.get(api.url + "/v1/collections").json()["data"]}
    assert listed[NAME]["language"] == "english"
    with engine.begin() as conn:
        german = collections.create_collection(conn, "hybrid-german", collection.model, 384, language="german")
    assert german.language == "german"


def test_an_unknown_language_is_refused(engine: Engine) -> None:
    from onnxvec.errors import StoreError

    with pytest.raises(StoreError, match="no text search configuration 'klingon'") as refused, engine.begin() as conn:
        collections.create_collection(conn, "hybrid-klingon", "all-MiniLM-L6-v2", 384, language="klingon")
    assert refused.value.param == "language"


def test_chat_retrieves_in_the_requested_mode(chat_api, collection: collections.Collection) -> None:
    def retrieved(**body) -> list[str]:
        messages = [{"role": "user", "content": "ERR-7781"}]
        response = httpx.post(
            chat_api.url + "/v1/chat/completions",
            json={"messages": messages, "collection": NAME, "max_tokens": 1, **body},
            timeout=60,
        )
        assert response.status_code == 200, response.text
        return [c["external_id"] for c in response.json()["retrieved"]]

    assert retrieved(mode="text", k=1) == ["doc-0"]
    assert retrieved(mode="vector", k=1) == ["doc-8"]  # the embedding misses the code
    assert retrieved(mode="text", filter={"team": "billing"}) == []
    bad = {"messages": [{"role": "user", "content": "x"}], "mode": "bm25"}
    refused = httpx.post(chat_api.url + "/v1/chat/completions", json=bad)
    assert refused.status_code == 400 and refused.json()["error"]["param"] == "mode"


def test_cli_language_and_mode(settings: Settings, collection: collections.Collection) -> None:
    made = onnxvec(settings, "collections", "create", "hybrid_de", "--language", "german")
    assert made.returncode == 0 and "full text in german" in made.stdout, made.stderr
    unknown = onnxvec(settings, "collections", "create", "hybrid_xx", "--language", "klingon")
    assert unknown.returncode == 1 and "no text search configuration 'klingon'" in unknown.stderr
    found = onnxvec(settings, "search", "ERR-7781", "--collection", NAME, "--mode", "text", "-k", "1")
    assert found.returncode == 0 and "[ts_rank_cd] doc" in found.stdout and "mem://0" in found.stdout, found.stderr
    hybrid = onnxvec(settings, "search", "ERR-7781", "--collection", NAME, "--mode", "hybrid", "-k", "3")
    assert hybrid.stdout.count("[rrf]") == 3 and "mem://0" in hybrid.stdout, hybrid.stderr
    wrong = onnxvec(settings, "search", "x", "--collection", NAME, "--mode", "bm25")
    assert wrong.returncode == 2 and "bm25" in wrong.stderr


def test_the_migration_fills_the_chunks_it_finds(new_database: Callable[[str], str]) -> None:
    """Chunks written before 0009 get their tsvector (in english) from it; down and up again works."""
    engine = db.make_engine(new_database("hybrid_migration"))
    db.downgrade(engine, "0008")
    with engine.begin() as conn:
        made = "INSERT INTO collections (name, model, dims, metric) VALUES ('old', 'm', 3, 'cosine') RETURNING id"
        col = conn.execute(text(made)).scalar_one()
        doc = conn.execute(
            text("INSERT INTO documents (collection_id, external_id) VALUES (:c, 'doc') RETURNING id"), {"c": col}
        ).scalar_one()
        conn.execute(
            text(
                "INSERT INTO chunks (collection_id, document_id, ordinal, text, content_hash, token_count, embedding)"
                " VALUES (:c, :d, 0, 'The importers aborted.', 'h', 4, '[1,0,0]')"
            ),
            {"c": col, "d": doc},
        )
    db.upgrade(engine)
    with engine.begin() as conn:
        old = collections.get_collection(conn, "old")
        assert old.language == "english"
        assert conn.execute(text("SELECT tsv::text FROM chunks")).scalar_one() == "'abort':3 'import':2"
        assert [hit.external_id for hit in chunks.text_search(conn, old, "which importer aborted?")] == ["doc"]
    db.downgrade(engine, "0008")
    db.upgrade(engine)
    engine.dispose()
