"""/v1/completions (legacy text completion) and chat's response_format, logprobs and refused fields,
on the tiny model the tests build; JSON mode on the real default chat model."""

from __future__ import annotations

import json

import httpx
import numpy as np
import openai
import pytest

URL = "/v1/completions"
CHAT = "/v1/chat/completions"
HELLO = [{"role": "user", "content": "What is the capital of France?"}]
TOOL_CALL = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
SCHEMA = {
    "type": "object",
    "properties": {"country": {"type": "string"}, "capital": {"type": "string"}},
    "required": ["country", "capital"],
    "additionalProperties": False,
}


def _complete(api, **body) -> httpx.Response:
    return httpx.post(api.url + URL, json={"prompt": "Once upon a time", **body}, timeout=60)


def _events(response: httpx.Response) -> list:
    lines = [line[len("data: ") :] for line in response.text.splitlines() if line.startswith("data: ")]
    assert lines[-1] == "[DONE]"
    return [json.loads(line) for line in lines[:-1]]


def test_completion_shape_usage_and_choices_per_prompt(chat_api) -> None:
    body = _complete(chat_api, prompt=["Once upon a time", "The end"], n=2, max_tokens=5, temperature=1, seed=3).json()
    engine = chat_api.app.state.chat._models["tiny-chat"].engine
    assert body["object"] == "text_completion" and body["id"].startswith("cmpl-") and body["model"] == "tiny-chat"
    assert [c["index"] for c in body["choices"]] == [0, 1, 2, 3]
    prompt_tokens = 2 * (len(engine.encode("Once upon a time")) + len(engine.encode("The end")))
    usage = body["usage"]
    assert usage["prompt_tokens"] == prompt_tokens
    assert usage["total_tokens"] == prompt_tokens + usage["completion_tokens"] and usage["completion_tokens"] <= 20
    assert all(c["finish_reason"] in ("stop", "length") and c["logprobs"] is None for c in body["choices"])


def test_default_max_tokens_is_openais_16(chat_api) -> None:
    body = _complete(chat_api, temperature=1, seed=5, min_tokens=16).json()
    assert body["usage"]["completion_tokens"] == 16 and body["choices"][0]["finish_reason"] == "length"


def test_streaming_and_echo_match_plain(chat_api) -> None:
    plain = _complete(chat_api, max_tokens=8, temperature=1, seed=11).json()["choices"][0]["text"]
    echoed = _complete(chat_api, max_tokens=8, temperature=1, seed=11, echo=True).json()["choices"][0]["text"]
    assert echoed == "Once upon a time" + plain
    events = _events(_complete(chat_api, max_tokens=8, temperature=1, seed=11, stream=True))
    assert all(e["object"] == "text_completion" for e in events)
    assert "".join(e["choices"][0]["text"] for e in events) == plain
    assert events[-1]["choices"][0]["finish_reason"] in ("stop", "length")


def test_openai_client_completions(chat_api) -> None:
    client = openai.OpenAI(base_url=chat_api.url + "/v1", api_key="unused", max_retries=0)
    done = client.completions.create(model="tiny-chat", prompt="Hello", max_tokens=6, seed=2, temperature=1)
    stream = client.completions.create(
        model="tiny-chat", prompt="Hello", max_tokens=6, seed=2, temperature=1, stream=True
    )
    assert "".join(c.choices[0].text for c in stream if c.choices) == done.choices[0].text


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"suffix": "x"}, "suffix"),
        ({"best_of": 2}, "best_of"),
        ({"logprobs": 2}, "logprobs"),
        ({"prompt": ""}, "prompt"),
        ({"prompt": ["fine", ""]}, "prompt"),
        ({"prompt": "word " * 5000}, "prompt"),
        ({"frequency_penalty": 1}, "frequency_penalty"),
        ({"logit_bias": {"5": 10}}, "logit_bias"),
        ({"unknown_field": 1}, "unknown_field"),
    ],
)
def test_bad_completion_parameters_are_400(chat_api, body: dict, param: str) -> None:
    response = _complete(chat_api, **body)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == param


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}]}, "tools"),
        ({"tool_choice": "required"}, "tool_choice"),
        ({"messages": [{"role": "tool", "content": "42", "tool_call_id": "c1"}]}, "messages.0.role"),
        (
            {"messages": [*HELLO, {"role": "assistant", "content": None, "tool_calls": [TOOL_CALL]}]},
            "messages.1.tool_calls",
        ),
        ({"top_logprobs": 2}, "top_logprobs"),
        (
            {"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "nonsense"}}}},
            "response_format",
        ),
        ({"response_format": {"type": "xml"}}, "response_format.type"),
        ({"logit_bias": {"5": 10}}, "logit_bias"),
        ({"unknown_field": 1}, "unknown_field"),
    ],
)
def test_chat_fields_without_effect_are_400_not_ignored(chat_api, body: dict, param: str) -> None:
    response = httpx.post(chat_api.url + CHAT, json={"messages": HELLO, **body}, timeout=60)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["param"] == param and "input." not in error["message"], error


def test_logprobs_are_the_models(chat_api) -> None:
    """Greedy decoding picks the likeliest token: each chosen token is its own top-1, probabilities sum <= 1."""
    body = {"messages": HELLO, "max_tokens": 8, "temperature": 0, "logprobs": True, "top_logprobs": 3}
    choice = httpx.post(chat_api.url + CHAT, json=body, timeout=60).json()["choices"][0]
    content = choice["logprobs"]["content"]
    assert 0 < len(content) <= 8
    for entry in content:
        tops = entry["top_logprobs"]
        assert len(tops) == 3 and entry["logprob"] <= 0
        assert tops[0]["token"] == entry["token"] and tops[0]["logprob"] == pytest.approx(entry["logprob"])
        assert np.exp([t["logprob"] for t in tops]).sum() <= 1 + 1e-6
        assert bytes(entry["bytes"]).decode(errors="replace") == entry["token"]
    plain_body = {k: v for k, v in body.items() if k not in ("logprobs", "top_logprobs")}
    plain = httpx.post(chat_api.url + CHAT, json=plain_body, timeout=60).json()["choices"][0]
    assert plain["logprobs"] is None and plain["message"]["content"] == choice["message"]["content"]
    events = _events(httpx.post(chat_api.url + CHAT, json=body | {"stream": True}, timeout=60))
    streamed = [e for event in events for c in event["choices"] if c.get("logprobs") for e in c["logprobs"]["content"]]
    assert [e["token"] for e in streamed] == [e["token"] for e in content]


def test_json_schema_output_parses_and_answers(smol_api) -> None:
    """response_format json_schema constrains the real model's output to the schema (genai guidance)."""
    client = openai.OpenAI(base_url=smol_api.url + "/v1", api_key="unused", max_retries=0)
    done = client.chat.completions.create(
        model="SmolLM2-135M-Instruct",
        messages=[
            {"role": "user", "content": "In which city is the Eiffel Tower, and in which country? Answer in JSON."}
        ],
        max_tokens=60,
        temperature=0,
        response_format={"type": "json_schema", "json_schema": {"name": "place", "schema": SCHEMA}},
    )
    answer = json.loads(done.choices[0].message.content)
    assert set(answer) == {"country", "capital"} and "Paris" in answer["capital"], answer
    mode = client.chat.completions.create(
        model="SmolLM2-135M-Instruct",
        messages=[{"role": "user", "content": "Give the capital of France as JSON."}],
        max_tokens=40,
        temperature=0,
        response_format={"type": "json_object"},
    )
    assert isinstance(json.loads(mode.choices[0].message.content), dict)


def test_real_model_completes_text(smol_api) -> None:
    client = openai.OpenAI(base_url=smol_api.url + "/v1", api_key="unused", max_retries=0)
    done = client.completions.create(
        model="SmolLM2-135M-Instruct", prompt="The capital of France is", max_tokens=5, temperature=0
    )
    assert "Paris" in done.choices[0].text, done.choices[0].text
