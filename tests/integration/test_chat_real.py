"""The real chat models: the small one (SmolLM2-135M-Instruct, int4) for facts, RAG with citations,
the openai client, a client leaving mid-stream and the queue limit; the default one
(Qwen2.5-Coder-0.5B-Instruct, int4) answering from its sources."""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Iterator

import httpx
import openai
import pytest
from sqlalchemy import Engine

from onnxvec.embedding.engine import EmbeddingEngine
from tests.helpers import small_collection

pytestmark = pytest.mark.slow  # minutes: `pytest -m 'not slow'` leaves it out

URL = "/v1/chat/completions"
FACT = "The chief engineer of the Zorbulax Project is Mirela Quandtberg."
OTHER = [
    "Sourdough bread needs flour, water, salt and a starter.",
    "The violin has four strings tuned in fifths.",
]


def test_paris(smol_api) -> None:
    body = httpx.post(
        smol_api.url + URL,
        json={"messages": [{"role": "user", "content": "What is the capital of France?"}], "max_tokens": 30},
        timeout=120,
    ).json()
    assert "Paris" in body["choices"][0]["message"]["content"], body


def test_rag_answers_from_the_documents_and_cites_them(smol_api, engine: Engine, embedder: EmbeddingEngine) -> None:
    small_collection(engine, embedder, "rag-facts", [(text, {}) for text in [FACT, *OTHER]])
    question = [{"role": "user", "content": "Who is the chief engineer of the Zorbulax Project?"}]
    body = httpx.post(
        smol_api.url + URL,
        json={"messages": question, "collection": "rag-facts", "k": 2, "max_tokens": 40, "temperature": 0},
        timeout=120,
    ).json()
    answer = body["choices"][0]["message"]["content"]
    assert "Quandtberg" in answer, answer
    retrieved = body["retrieved"]  # every source in the prompt, best first
    assert [(r["external_id"], r["source"]) for r in retrieved][:1] == [("doc-0", "mem://0")]
    assert len(retrieved) == 2 and retrieved[0]["score"] > retrieved[1]["score"]
    # cited: the fact the answer repeats, not the unrelated source it ignored
    assert [(c["external_id"], c["index"]) for c in body["citations"]] == [("doc-0", 1)], (answer, body["citations"])
    assert body["citations"][0]["evidence"] in {"marker", "overlap"}
    streamed = httpx.post(
        smol_api.url + URL,
        json={
            "messages": question,
            "collection": "rag-facts",
            "k": 2,
            "max_tokens": 40,
            "temperature": 0,
            "stream": True,
        },
        timeout=120,
    )
    final = [json.loads(line[6:]) for line in streamed.text.splitlines() if line.startswith("data: {")][-1]
    assert final["citations"] == body["citations"] and final["retrieved"] == retrieved
    plain = httpx.post(smol_api.url + URL, json={"messages": question, "max_tokens": 40, "temperature": 0}, timeout=120)
    assert "Quandtberg" not in plain.json()["choices"][0]["message"]["content"]  # the model cannot know it
    assert plain.json()["citations"] == [] and plain.json()["retrieved"] == []


def test_an_answer_from_sources_can_still_be_json(smol_api, engine: Engine, embedder: EmbeddingEngine) -> None:
    """A JSON schema asked for wins over the answer-first rule of RAG sampling (one guide per generation)."""
    small_collection(engine, embedder, "rag-json", [(text, {}) for text in [FACT, *OTHER]])
    schema = {
        "type": "object",
        "properties": {"engineer": {"type": "string"}},
        "required": ["engineer"],
        "additionalProperties": False,
    }
    question = [{"role": "user", "content": "Who is the chief engineer of the Zorbulax Project? Answer in JSON."}]
    body = {
        "messages": question,
        "collection": "rag-json",
        "k": 2,
        "max_tokens": 100,
        "temperature": 0,
        "response_format": {"type": "json_schema", "json_schema": {"name": "who", "schema": schema}},
    }
    reply = httpx.post(smol_api.url + URL, json=body, timeout=120).json()
    assert reply["retrieved"], reply  # the sources were in the prompt
    assert isinstance(json.loads(reply["choices"][0]["message"]["content"])["engineer"], str), reply


MANUAL = [
    "The zorbctl tool reads its settings from /etc/zorb/zorb.conf unless the --config option names another file.",
    "The max_glide_connections parameter sets how many clients Zorbulax serves at once; it defaults to 250.",
    "Zorbulax writes its log to the file named by log_target, rotating it every 24 hours.",
    "To stop a running Zorbulax server cleanly, send it SIGTERM; SIGKILL loses the changes not yet flushed.",
]
MANUAL_QUESTIONS = [  # (question, a fact the answer must hold, the source that states it)
    ("How many clients does Zorbulax serve at once by default?", "250", "doc-1"),
    ("Which file does zorbctl read its settings from?", "/etc/zorb/zorb.conf", "doc-0"),
    ("Which signal stops a Zorbulax server cleanly?", "SIGTERM", "doc-3"),
]


def test_the_default_chat_model_answers_from_its_sources(rag_api, engine: Engine, embedder: EmbeddingEngine) -> None:
    """The default chat model states the fact its source holds and cites that source, where the small
    model mostly does not (bench/rag.py); and says so when the sources hold no answer."""
    small_collection(engine, embedder, "rag-manual", [(text, {}) for text in MANUAL])
    for question, fact, source in MANUAL_QUESTIONS:
        body = {"messages": [{"role": "user", "content": question}], "collection": "rag-manual", "k": 3}
        reply = httpx.post(rag_api.url + URL, json=body | {"temperature": 0}, timeout=300).json()
        answer = reply["choices"][0]["message"]["content"]
        assert fact in answer, (question, answer)
        assert answer[0].isalpha(), answer  # not "[1]" alone (ANSWER_FIRST)
        assert source in [c["external_id"] for c in reply["citations"]], (answer, reply["citations"])
        assert reply["choices"][0]["finish_reason"] == "stop" and reply["usage"]["completion_tokens"] < 100


def test_openai_client(smol_api) -> None:
    client = openai.OpenAI(base_url=smol_api.url + "/v1", api_key="unused", max_retries=0)
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    done = client.chat.completions.create(model="SmolLM2-135M-Instruct", messages=messages, max_tokens=20)
    assert "Paris" in done.choices[0].message.content and done.choices[0].finish_reason == "stop"
    stream = client.chat.completions.create(
        model="SmolLM2-135M-Instruct", messages=messages, max_tokens=20, stream=True
    )
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == done.choices[0].message.content


def _cancelled(api) -> float:
    lines = httpx.get(api.url + "/metrics").text.splitlines()
    name = "onnxvec_chat_completions_total{"
    return sum(float(x.split()[-1]) for x in lines if x.startswith(name) and 'finish_reason="cancelled"' in x)


def test_disconnect_mid_stream_stops_the_generation(smol_api) -> None:
    model = smol_api.app.state.chat._models["SmolLM2-135M-Instruct"]
    before = _cancelled(smol_api)
    story = [{"role": "user", "content": "Write a very long story about a dragon."}]
    body = {"messages": story, "max_tokens": 600, "min_tokens": 600, "stream": True}
    with httpx.stream("POST", smol_api.url + URL, json=body, timeout=60) as response:
        lines = response.iter_lines()
        for _ in range(6):  # a few tokens in: the generation is running
            next(lines)
    started = time.monotonic()
    while model.turns.held or _cancelled(smol_api) == before:
        assert time.monotonic() - started < 5, "the generation kept running after the client left"
        time.sleep(0.05)


@contextlib.contextmanager
def _generating(api, headers: dict | None = None) -> Iterator[None]:
    """Inside: a 300-token streamed story is being generated (its first chunks have arrived)."""
    story = [{"role": "user", "content": "Write a long story about the sea."}]
    body = {"messages": story, "max_tokens": 300, "min_tokens": 300, "stream": True}
    with httpx.stream("POST", api.url + URL, json=body, headers=headers, timeout=60) as busy:
        lines = busy.iter_lines()
        for _ in range(4):
            next(lines)
        yield


def test_queue_limit_is_429(start_api, smol_api) -> None:
    server = start_api(max_queued_chats=0)
    with _generating(server):
        refused = httpx.post(server.url + URL, json={"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2})
    assert refused.status_code == 429 and refused.headers["retry-after"] == "1", refused.text
    assert refused.json()["error"]["type"] == "rate_limit_error"


def test_turns_at_the_model_rotate_between_clients(start_api, smol_api) -> None:
    """One client's queue of chats does not stand in front of another's: with client A generating and
    three more of A's requests waiting, client B's single request is answered right after A's next."""
    server = start_api(api_keys="sk-turn-a, sk-turn-b")
    finished: list[str] = []

    def ask(key: str, label: str) -> None:
        body = {"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 8, "min_tokens": 8}
        answer = httpx.post(server.url + URL, json=body, headers={"Authorization": f"Bearer {key}"}, timeout=120)
        assert answer.status_code == 200, answer.text
        finished.append(label)

    askers = []
    with _generating(server, {"Authorization": "Bearer sk-turn-a"}):
        turns = server.app.state.chat._models["SmolLM2-135M-Instruct"].turns
        for key, label in [("sk-turn-a", "A1"), ("sk-turn-a", "A2"), ("sk-turn-a", "A3"), ("sk-turn-b", "B")]:
            askers.append(threading.Thread(target=ask, args=(key, label)))
            askers[-1].start()
            deadline = time.monotonic() + 30
            while turns.waiting < len(askers):  # queued in this order
                assert time.monotonic() < deadline and turns.held
                time.sleep(0.01)
    for asker in askers:
        asker.join(timeout=120)
    assert finished == ["A1", "B", "A2", "A3"]  # first come, first served would be A1, A2, A3, B


def test_generation_does_not_block_embeddings(smol_api) -> None:
    with _generating(smol_api):
        assert smol_api.app.state.chat._models["SmolLM2-135M-Instruct"].turns.held  # generating now
        started = time.monotonic()
        response = httpx.post(smol_api.url + "/v1/embeddings", json={"input": "while the model talks"}, timeout=60)
        waited = time.monotonic() - started
    assert response.status_code == 200 and waited < 1.0, waited


def test_a_long_prefill_never_freezes_the_api(smol_api) -> None:
    """A ~4,000-token prompt (max_tokens 1: all prefill) runs in the model's own process: /health
    answers in < 200 ms and an embeddings request in < 1 s meanwhile (on a thread of the server, the
    prefill held the GIL and stalled both for ~31 s). /health is held to < 200 ms at the 95th percentile
    and < 1 s at worst."""
    model = smol_api.app.state.chat._models["SmolLM2-135M-Instruct"]
    long_prompt = " ".join(f"Line {i} of a long log file: the service restarted." for i in range(400))
    done: list[httpx.Response] = []
    body = {"messages": [{"role": "user", "content": long_prompt}], "max_tokens": 1}
    deadline = time.monotonic() + 60
    while model.turns.held:  # an earlier test's generation winds down first: the turn seen next is ours
        assert time.monotonic() < deadline
        time.sleep(0.01)
    chatting = threading.Thread(target=lambda: done.append(httpx.post(smol_api.url + URL, json=body, timeout=300)))
    chatting.start()
    deadline = time.monotonic() + 60
    while not model.turns.held:  # the prompt is tokenized; the prefill begins
        assert time.monotonic() < deadline and chatting.is_alive()
        time.sleep(0.01)
    health, embeddings = [], []
    with httpx.Client(base_url=smol_api.url, timeout=30) as client:
        while model.turns.held:
            started = time.monotonic()
            assert client.get("/health").status_code == 200
            health.append(time.monotonic() - started)
            started = time.monotonic()
            assert client.post("/v1/embeddings", json={"input": "meanwhile"}).status_code == 200
            embeddings.append(time.monotonic() - started)
    chatting.join()
    assert done[0].status_code == 200 and done[0].json()["usage"]["prompt_tokens"] > 3500, done[0].text
    assert len(health) >= 3, health  # the prefill took a while: the probes ran during it
    p95 = sorted(health)[int(0.95 * len(health))]
    figures = {"prompt_tokens": done[0].json()["usage"]["prompt_tokens"], "probes": len(health)}
    figures |= {"health_p95_ms": round(p95 * 1000, 1), "health_max_ms": round(max(health) * 1000, 1)}
    figures |= {"embeddings_max_ms": round(max(embeddings) * 1000, 1)}
    print(json.dumps(figures))
    # a frozen loop shows as seconds on every probe; a 2-core machine's scheduler adds the odd slow one
    assert p95 < 0.2 and max(health) < 1.0 and max(embeddings) < 1.0, figures


def test_a_client_that_times_out_stops_its_generation(smol_api) -> None:
    """Non-streaming: the client gives up after 1 s; the 600-token generation stops within seconds."""
    model = smol_api.app.state.chat._models["SmolLM2-135M-Instruct"]
    before = _cancelled(smol_api)
    story = [{"role": "user", "content": "Write a very long story about a dragon."}]
    body = {"messages": story, "max_tokens": 600, "min_tokens": 600}
    with contextlib.suppress(httpx.TimeoutException):
        httpx.post(smol_api.url + URL, json=body, timeout=1)
    started = time.monotonic()
    while model.turns.held or _cancelled(smol_api) == before:
        assert time.monotonic() - started < 5, "the generation kept running after its client timed out"
        time.sleep(0.05)
