"""Text generation with onnxruntime-genai: a chat model's own template, sampling, stop strings,
constrained output (JSON schema, through genai's llguidance) and log-probabilities.

A `ChatEngine` wraps one genai folder (genai_config.json). `Generation` runs one completion token by
token, yielding text as it is decoded, so a caller can stream it or stop it (a client that went
away) between any two tokens. Stop strings are matched on decoded text, across token boundaries.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime_genai as og

from onnxvec.errors import GenerationError, ModelError

GENAI_SEEDS = 2**31  # random_seed takes [0, 2**31); -1 would mean "random"


@dataclass(frozen=True)
class Sampling:
    """OpenAI's sampling fields; None means the model's own default (its genai_config search section)."""

    max_tokens: int | None = None
    min_tokens: int | None = None  # the end token is suppressed until this many (vLLM's extension)
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    seed: int | None = None
    stop: tuple[str, ...] = ()
    repetition_penalty: float | None = None
    json_schema: str | None = None  # output constrained to this JSON schema (OpenAI's response_format)
    regex: str | None = None  # output constrained to match this regular expression (when no JSON schema is)
    logprobs: int | None = None  # None: off; n: each token's log-probability and the n likeliest
    loop_guard: bool = False  # stop a generation that repeats itself (see LoopGuard)


class StopMatcher:
    """Cuts text at the first stop string. Text that could still grow into a stop string is held
    back until the next piece shows it does not, so a stop split across tokens never leaks out."""

    def __init__(self, stops: Sequence[str]) -> None:
        self.stops = [s for s in stops if s]
        self.pending = ""
        self.stopped = False

    def feed(self, piece: str) -> str:
        """The text that is safe to emit now."""
        self.pending += piece
        found = [at for s in self.stops if (at := self.pending.find(s)) >= 0]
        if found:
            self.stopped = True
            out, self.pending = self.pending[: min(found)], ""
            return out
        hold = self._partial_stop_length()
        out, self.pending = self.pending[: len(self.pending) - hold], self.pending[len(self.pending) - hold :]
        return out

    def flush(self) -> str:
        """What was held back, once generation has ended without completing a stop string."""
        out, self.pending = self.pending, ""
        return out

    def _partial_stop_length(self) -> int:
        """Length of the longest tail of the pending text that begins some stop string."""
        longest = min(len(self.pending), max((len(s) - 1 for s in self.stops), default=0))
        for size in range(longest, 0, -1):
            tail = self.pending[-size:]
            if any(s.startswith(tail) for s in self.stops):
                return size
        return 0


class LoopGuard:
    """Tells when a generation has fallen into a loop, as small models do under greedy decoding (a
    sentence repeated to the token limit): its last tokens are one run repeated back to back, at least
    three times over 12 tokens or more, or twice when the run is 16 tokens or longer. Text that merely
    reuses phrases is not stopped; only verbatim repetition of the very tail is."""

    MAX_PERIOD = 96

    def __init__(self) -> None:
        self.tokens: list[int] = []

    def looping(self, token: int) -> bool:
        t = self.tokens
        t.append(token)
        n = len(t)
        for period in range(1, min(self.MAX_PERIOD, n // 2) + 1):
            copies = 2 if period >= 16 else 3
            if copies * period < 12 or copies * period > n or t[n - 1 - period] != token:
                continue
            tail = t[n - period :]
            if all(t[n - (c + 1) * period : n - c * period] == tail for c in range(1, copies)):
                return True
        return False


class ChatEngine:
    """One loaded genai model with its tokenizer and chat template."""

    def __init__(self, folder: Path, name: str) -> None:
        self.name = name
        config = json.loads((folder / "genai_config.json").read_text())["model"]
        self.context_length: int = int(config["context_length"])
        self.vocab_size: int = int(config.get("vocab_size", 2**31 - 1))  # top_k's bound in genai
        eos = config.get("eos_token_id", [])
        self.eos_ids = set(eos if isinstance(eos, list) else [eos])
        self.has_template = (folder / "chat_template.jinja").is_file() or "chat_template" in _tokenizer_config(folder)
        try:
            self.model = og.Model(str(folder))
            self.tokenizer = og.Tokenizer(self.model)
        except Exception as exc:  # onnxruntime-genai raises plain RuntimeErrors
            raise ModelError(f"{name}: onnxruntime-genai cannot load {folder}: {exc}") from exc

    def render(self, messages: list[dict[str, str]]) -> str:
        """The prompt text the model was trained on, from its own chat template."""
        if not self.has_template:
            raise ModelError(f"{self.name} has no chat template (chat_template.jinja or tokenizer_config.json)")
        return self.tokenizer.apply_chat_template(json.dumps(messages), add_generation_prompt=True)

    def encode(self, text: str) -> list[int]:
        return [int(t) for t in self.tokenizer.encode(text)]

    def check(self, sampling: Sampling) -> None:
        """Refuse now what genai would refuse once generating, when a stream can no longer answer 400."""
        if sampling.json_schema is None:
            return
        params = og.GeneratorParams(self.model)
        params.set_search_options(max_length=2)
        try:
            params.set_guidance("json_schema", sampling.json_schema)
            og.Generator(self.model, params)
        except Exception as exc:  # genai raises plain RuntimeErrors
            raise GenerationError(f"The JSON schema cannot constrain generation: {exc}") from exc

    def generate(self, prompt_ids: list[int], sampling: Sampling, cancel: threading.Event) -> Generation:
        return Generation(self, prompt_ids, sampling, cancel)


class GenerationState:
    """One completion: iterate for text deltas; afterwards `finish_reason`, `completion_tokens` and
    `logprobs` hold. Setting `cancel` stops it at its next token."""

    def __init__(self, engine: Any, prompt_ids: list[int], sampling: Sampling, cancel: threading.Event) -> None:
        self.engine = engine
        self.prompt_ids = prompt_ids
        self.sampling = sampling
        self.cancel = cancel
        self.finish_reason: str | None = None
        self.completion_tokens = 0
        self.logprobs: list[dict[str, Any]] = []  # OpenAI's logprobs.content entries, when asked for


class Generation(GenerationState):
    """A completion generated here, by genai (in a chat model's process: onnxvec/chat/process.py)."""

    engine: ChatEngine

    def _params(self) -> og.GeneratorParams:
        s, engine = self.sampling, self.engine
        room = engine.context_length - len(self.prompt_ids)
        options: dict[str, float | int | bool] = {"max_length": len(self.prompt_ids) + min(room, s.max_tokens or room)}
        if s.temperature is not None:
            options["do_sample"] = s.temperature > 0
            if s.temperature > 0:
                options["temperature"] = s.temperature
        top_k = None if s.top_k is None else min(s.top_k, engine.vocab_size)  # genai refuses more: same sampling
        for key, value in (("top_p", s.top_p), ("top_k", top_k), ("repetition_penalty", s.repetition_penalty)):
            if value is not None:
                options[key] = value
        if s.seed is not None:  # OpenAI's seed is 64-bit, genai's a signed 32-bit int: larger ones fold
            options["random_seed"] = s.seed % GENAI_SEEDS
        if s.min_tokens:  # never past max_length, which genai would refuse
            options["min_length"] = len(self.prompt_ids) + min(s.min_tokens, room, s.max_tokens or room)
        params = og.GeneratorParams(engine.model)
        params.set_search_options(**options)
        if s.json_schema is not None:
            params.set_guidance("json_schema", s.json_schema)
        elif s.regex is not None:
            params.set_guidance("regex", s.regex)
        return params

    def __iter__(self) -> Iterator[str]:
        if self.cancel.is_set():  # its client left while it waited for its turn: no prefill for nobody
            self.finish_reason = "cancelled"
            return
        generator = og.Generator(self.engine.model, self._params())
        generator.append_tokens(self.prompt_ids)
        stream = self.engine.tokenizer.create_stream()
        stops = StopMatcher(self.sampling.stop)
        guard = LoopGuard() if self.sampling.loop_guard else None
        try:
            while not generator.is_done():
                if self.cancel.is_set():
                    self.finish_reason = "cancelled"
                    return
                # the logits of the token about to be chosen: read before choosing, genai computes them
                # once for both (read after, they would be the next position's, at the cost of a forward)
                logits = generator.get_logits() if self.sampling.logprobs is not None else None
                generator.generate_next_token()
                token = int(generator.get_next_tokens()[0])
                self.completion_tokens += 1
                if token in self.engine.eos_ids:
                    self.finish_reason = "stop"
                    break
                if logits is not None:
                    self.logprobs.append(self._logprob(logits, token))
                text = stops.feed(stream.decode(token))
                if text:
                    yield text
                if stops.stopped:
                    self.finish_reason = "stop"
                    return
                if guard is not None and guard.looping(token):
                    self.finish_reason = "stop"
                    break
            self.finish_reason = self.finish_reason or "length"
            tail = stops.flush()
            if tail:
                yield tail
        finally:
            del generator  # frees its KV cache now, not at the next garbage collection

    def _logprob(self, logits: np.ndarray, token: int) -> dict[str, Any]:
        """OpenAI's entry for one token: its log-probability under the model and the likeliest others."""
        row = np.asarray(logits, dtype=np.float64).reshape(-1)
        logprobs = row - row.max() - np.log(np.exp(row - row.max()).sum())
        top = np.argsort(-logprobs)[: self.sampling.logprobs or 0]
        return self._entry(token, logprobs) | {"top_logprobs": [self._entry(int(t), logprobs) for t in top]}

    def _entry(self, token: int, logprobs: np.ndarray) -> dict[str, Any]:
        text = self.engine.tokenizer.decode([token])
        return {"token": text, "logprob": float(logprobs[token]), "bytes": list(text.encode())}


def _tokenizer_config(folder: Path) -> dict:
    path = folder / "tokenizer_config.json"
    return json.loads(path.read_text()) if path.is_file() else {}
