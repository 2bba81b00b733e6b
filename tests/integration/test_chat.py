"""/v1/chat/completions on the tiny model the tests build: shapes, sampling, stops, limits, streaming."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time

import httpx
import openai
import pytest

from onnxvec.models.pull import pull_local
from onnxvec.sources.files import SourceDocument
from onnxvec.storage import chunks, collections, documents

URL = "/v1/chat/completions"
HELLO = [{"role": "user", "content": "What is the capital of France?"}]


def _chat(api, **body) -> httpx.Response:
    return httpx.post(api.url + URL, json={"messages": HELLO, **body}, timeout=60)


def _events(response: httpx.Response) -> list:
    lines = [line[len("data: ") :] for line in response.text.splitlines() if line.startswith("data: ")]
    assert lines[-1] == "[DONE]"
    return [json.loads(line) for line in lines[:-1]]


def test_completion_shape_and_usage(chat_api) -> None:
    response = _chat(chat_api, max_tokens=7, temperature=1, seed=1)
    body = response.json()
    assert body["object"] == "chat.completion" and body["id"].startswith("chatcmpl-") and body["model"] == "tiny-chat"
    (choice,) = body["choices"]
    assert choice["index"] == 0 and choice["message"]["role"] == "assistant"
    engine = chat_api.app.state.chat._models["tiny-chat"].engine
    prompt_tokens = len(engine.prompt_ids(HELLO))
    usage = body["usage"]
    assert (
        usage["prompt_tokens"] == prompt_tokens and usage["total_tokens"] == prompt_tokens + usage["completion_tokens"]
    )
    if choice["finish_reason"] == "length":
        assert usage["completion_tokens"] == 7
    else:  # the random model happened to emit its end token
        assert choice["finish_reason"] == "stop" and usage["completion_tokens"] < 7
    assert body["citations"] == [] and body["retrieved"] == []


def test_seed_is_deterministic_and_n_choices_differ(chat_api) -> None:
    first = _chat(chat_api, max_tokens=12, temperature=1, seed=7, n=3).json()
    again = _chat(chat_api, max_tokens=12, temperature=1, seed=7, n=3).json()
    texts = [c["message"]["content"] for c in first["choices"]]
    assert [c["index"] for c in first["choices"]] == [0, 1, 2]
    assert texts == [c["message"]["content"] for c in again["choices"]]
    assert len(set(texts)) > 1
    other = _chat(chat_api, max_tokens=12, temperature=1, seed=8).json()["choices"][0]["message"]["content"]
    assert other == texts[1]  # choice i runs with seed + i: seed 8's first choice is seed 7's second


def test_top_k_past_the_vocabulary_samples_from_all_of_it(chat_api, model_store) -> None:
    """genai refuses top_k over the vocabulary (a 10^12 one was a 500): it means every token."""
    vocab = json.loads((model_store.path("tiny-chat") / "genai_config.json").read_text())["model"]["vocab_size"]
    texts = [
        _chat(chat_api, max_tokens=12, temperature=1, seed=4, top_k=k).json()["choices"][0]["message"]["content"]
        for k in (10**12, vocab)
    ]
    assert texts[0] == texts[1]


def test_a_64_bit_seed_is_taken_and_deterministic(chat_api) -> None:
    """OpenAI's seed is an int64; genai's is 31-bit (a larger one raised a 500): it folds, modulo 2^31."""
    big = -(2**63)
    texts = [_chat(chat_api, max_tokens=12, temperature=1, seed=big).json() for _ in range(2)]
    assert texts[0]["choices"][0]["message"]["content"] == texts[1]["choices"][0]["message"]["content"]
    folded = _chat(chat_api, max_tokens=12, temperature=1, seed=big % 2**31).json()
    assert folded["choices"][0]["message"]["content"] == texts[0]["choices"][0]["message"]["content"]


def test_streaming_matches_plain_and_ends_with_usage(chat_api) -> None:
    plain = _chat(chat_api, max_tokens=10, temperature=1, seed=3).json()
    streamed = _chat(
        chat_api, max_tokens=10, temperature=1, seed=3, stream=True, stream_options={"include_usage": True}
    )
    assert streamed.headers["content-type"].startswith("text/event-stream")
    events = _events(streamed)
    assert all(c["object"] == "chat.completion.chunk" and c["id"] == events[0]["id"] for c in events)
    assert events[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in events if c["choices"])
    assert text == plain["choices"][0]["message"]["content"]
    final = events[-2]
    assert final["choices"][0]["finish_reason"] == plain["choices"][0]["finish_reason"] and "citations" in final
    assert events[-1]["choices"] == [] and events[-1]["usage"] == plain["usage"]


def test_stop_strings_cut_the_text_even_across_tokens(chat_api) -> None:
    text = _chat(chat_api, max_tokens=40, temperature=1, seed=5).json()["choices"][0]["message"]["content"]
    assert len(text) > 12
    stop = text[6:10]
    cut = _chat(chat_api, max_tokens=40, temperature=1, seed=5, stop=[stop, "never-there"]).json()["choices"][0]
    assert cut["message"]["content"] == text[: text.index(stop)] and cut["finish_reason"] == "stop"
    streamed = _chat(chat_api, max_tokens=40, temperature=1, seed=5, stop=stop, stream=True)
    deltas = "".join(c["choices"][0]["delta"].get("content", "") for c in _events(streamed) if c["choices"])
    assert deltas == text[: text.index(stop)]


def test_max_tokens_gives_finish_reason_length(chat_api) -> None:
    body = _chat(chat_api, max_completion_tokens=3, min_tokens=3, temperature=1, seed=11).json()
    assert body["choices"][0]["finish_reason"] == "length" and body["usage"]["completion_tokens"] == 3


def test_over_long_conversation_is_trimmed_oldest_first(chat_api) -> None:
    history = []
    for i in range(200):
        history += [
            {"role": "user", "content": f"Question {i}: what is the answer to the question number {i}?"},
            {"role": "assistant", "content": f"The answer to question {i} is Paris, the capital of France."},
        ]
    messages = [{"role": "system", "content": "Be brief."}, *history, HELLO[0]]
    response = httpx.post(chat_api.url + URL, json={"messages": messages, "max_tokens": 16}, timeout=60)
    assert response.status_code == 200, response.text
    assert response.json()["usage"]["prompt_tokens"] <= 1024 - 16


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"temperature": 3}, "temperature"),
        ({"n": 0}, "n"),
        ({"top_p": 0}, "top_p"),
        ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
        ({"frequency_penalty": 0.5}, "frequency_penalty"),
        ({"max_tokens": 5000}, "max_tokens"),
        ({"messages": []}, "messages"),
        ({"messages": [{"role": "wizard", "content": "x"}]}, "messages.0.role"),
        ({"messages": [{"role": "tool", "content": "x"}]}, "messages.0.role"),
        ({"model": "all-MiniLM-L6-v2"}, "model"),
        ({"filter": {"year": {"$regex": "x"}}}, "filter"),  # checked even without a collection to search
    ],
)
def test_bad_parameters_are_400(chat_api, body: dict, param: str) -> None:
    response = httpx.post(chat_api.url + URL, json={"messages": HELLO, **body})
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == param


def test_unknown_chat_model_is_404(chat_api) -> None:
    assert _chat(chat_api, model="no-such-chat").status_code == 404


def test_openai_client_plain_and_streaming(chat_api) -> None:
    client = openai.OpenAI(base_url=chat_api.url + "/v1", api_key="unused", max_retries=0)
    done = client.chat.completions.create(model="tiny-chat", messages=HELLO, max_tokens=5, seed=2, temperature=1)
    assert done.choices[0].finish_reason in {"stop", "length"} and done.usage.completion_tokens <= 5
    stream = client.chat.completions.create(
        model="tiny-chat", messages=HELLO, max_tokens=5, seed=2, temperature=1, stream=True
    )
    text = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
    assert text == done.choices[0].message.content
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="tiny-chat", messages=HELLO, temperature=5)


def test_models_list_chat_models(chat_api) -> None:
    client = openai.OpenAI(base_url=chat_api.url + "/v1", api_key="unused", max_retries=0)
    model = client.models.retrieve("tiny-chat")
    assert model.model_extra["kind"] == "chat" and model.model_extra["context_length"] == 1024
    assert "tiny-chat" in {m.id for m in client.models.list()}


def test_chat_command_streams_and_prints_sources(settings, tiny_chat: str, engine, embedder) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env["ONNXVEC_HOME"] = str(settings.home)
    with engine.begin() as conn:
        col = collections.create_collection(conn, "cli-chat", embedder.manifest.name, embedder.dims, "cosine")
        (doc,) = documents.register(conn, col, [SourceDocument("n1", "mem://note", "Paris is in France.", {})]).queued
        vector = embedder.embed(["Paris is in France."]).vectors[0]
        chunks.write_chunks(conn, col, doc, [chunks.ChunkRow(0, "Paris is in France.", "h", 6, vector)])
    args = [sys.executable, "-m", "onnxvec", "chat", "Where is Paris?", "--model", tiny_chat, "--max-tokens", "4"]
    done = subprocess.run([*args, "--collection", "cli-chat"], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1].startswith("[1] mem://note (chunk 0, score ")
    missing = subprocess.run([*args, "--collection", "nope"], env=env, capture_output=True, text=True, timeout=120)
    assert missing.returncode == 1 and "nope" in missing.stderr and "Traceback" not in missing.stderr


def test_a_model_without_chat_template_is_a_clear_400(chat_api, model_store, tiny_chat: str, tmp_path) -> None:
    folder = tmp_path / "no-template"
    shutil.copytree(model_store.path(tiny_chat), folder)
    (folder / "manifest.json").unlink()
    (folder / "chat_template.jinja").unlink()
    pull_local(model_store, "tiny-no-template", folder)
    response = _chat(chat_api, model="tiny-no-template", max_tokens=2)
    assert response.status_code == 400 and "no chat template" in response.json()["error"]["message"]


def test_a_chat_process_that_dies_is_started_again(chat_api) -> None:
    """Each chat model runs in its own process; if it dies (OOM killer, a crash), the next request
    starts a new one instead of failing for good."""
    _chat(chat_api, max_tokens=2)  # loaded
    engine = chat_api.app.state.chat._models["tiny-chat"].engine
    engine.process.kill()
    deadline = time.monotonic() + 10
    while engine.alive:
        assert time.monotonic() < deadline, "the API did not notice its chat process died"
        time.sleep(0.02)
    again = _chat(chat_api, max_tokens=2)
    assert again.status_code == 200, again.text
    assert chat_api.app.state.chat._models["tiny-chat"].engine.process.pid != engine.process.pid
