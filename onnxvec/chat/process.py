"""Each chat model runs in a process of its own, so that generation never holds the API's GIL.

onnxruntime-genai's prefill keeps the GIL for seconds (a 900-word prompt stalled every other request
for ~31 s when it ran on a thread of the server). `RemoteChatEngine` starts
`python -m onnxvec.chat.process`, which loads the model and answers over a socket pair: calls
(prompt ids, token counts, encoding, checks) on a small pool, generations one at a time in arrival
order, each streaming its text deltas back and stopping at the next token once cancelled. If the
process dies, its pending calls fail with ModelError and the engine reports itself dead, so that the
service starts a new one.
"""

from __future__ import annotations

import itertools
import logging
import os
import queue
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from onnxvec.chat.generate import ChatEngine, GenerationState, Sampling
from onnxvec.chat.prompt import Message
from onnxvec.errors import GenerationError, ModelError

log = logging.getLogger(__name__)

POLL_SECONDS = 0.1  # how soon a waiting generation notices that it was cancelled


class RemoteChatEngine:
    """The API side of a chat model's process: ChatEngine's interface, over a socket pair.

    Blocking (process start, calls): use it off the event loop."""

    def __init__(self, folder: Path, name: str, niceness: int = 0) -> None:
        self.name = name
        ours, theirs = socket.socketpair()
        command = [
            sys.executable,
            "-m",
            "onnxvec.chat.process",
            str(theirs.fileno()),
            str(folder),
            name,
            str(niceness),
        ]
        self.process = subprocess.Popen(command, pass_fds=[theirs.fileno()])
        theirs.close()
        self.conn = Connection(ours.detach())
        try:
            status, info = self.conn.recv()
        except (EOFError, OSError) as exc:
            self.close()
            raise ModelError(f"{name}: its chat process ended while loading (exit {self.process.poll()})") from exc
        if status != "ready":
            self.close()
            raise ModelError(info)
        self.context_length: int = info["context_length"]
        self.vocab_size: int = info["vocab_size"]
        self.has_template: bool = info["has_template"]
        self.alive = True
        self._replies: dict[int, queue.Queue] = {}
        self._ids = itertools.count()
        self._send_lock = threading.Lock()
        threading.Thread(target=self._read, name=f"chat-replies-{name}", daemon=True).start()

    def prompt_ids(self, messages: list[Message]) -> list[int]:
        """The token ids of the messages rendered with the model's chat template."""
        return self._call("prompt_ids", messages)

    def count(self, messages: list[Message]) -> int:
        return self._call("count", messages)

    def encode(self, text: str) -> list[int]:
        return self._call("encode", text)

    def check(self, sampling: Sampling) -> None:
        self._call("check", sampling)

    def generate(self, prompt_ids: list[int], sampling: Sampling, cancel: threading.Event) -> RemoteGeneration:
        return RemoteGeneration(self, prompt_ids, sampling, cancel)

    def close(self) -> None:
        self.alive = False
        self.conn.close()
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def _call(self, method: str, *args: Any) -> Any:
        call_id, replies = self._open()
        try:
            self._send((method, call_id, *args))
            reply = replies.get()
        finally:
            self._replies.pop(call_id, None)
        return _result(self.name, reply)

    def _open(self) -> tuple[int, queue.Queue]:
        call_id = next(self._ids)
        self._replies[call_id] = queue.Queue()
        return call_id, self._replies[call_id]

    def _send(self, message: tuple) -> None:
        try:
            with self._send_lock:
                self.conn.send(message)
        except (OSError, ValueError) as exc:  # closed: the process died or the engine was closed
            self.alive = False
            raise ModelError(f"{self.name}: its chat process is gone") from exc

    def _read(self) -> None:
        while True:
            try:
                message = self.conn.recv()
            except (EOFError, OSError):
                break
            replies = self._replies.get(message[1])
            if replies is not None:
                replies.put(message)
        self.alive = False
        for replies in list(self._replies.values()):
            replies.put(("error", None, "model", "the chat model's process ended"))


class RemoteGeneration(GenerationState):
    """A completion generated in the model's process; iterating blocks while it waits for deltas."""

    engine: RemoteChatEngine

    def __iter__(self) -> Iterator[str]:
        call_id, replies = self.engine._open()
        cancelled = False
        try:
            self.engine._send(("generate", call_id, self.prompt_ids, self.sampling))
            while True:
                if self.cancel.is_set() and not cancelled:
                    self.engine._send(("cancel", call_id))
                    cancelled = True
                try:
                    message = replies.get(timeout=POLL_SECONDS)
                except queue.Empty:
                    continue
                if message[0] == "delta":
                    self.logprobs += message[3]
                    yield message[2]
                elif message[0] == "end":
                    self.finish_reason, self.completion_tokens = message[2], message[3]
                    return
                else:
                    _result(self.engine.name, message)
        finally:
            if self.finish_reason is None and not cancelled and self.engine.alive:  # the consumer stopped early
                self.engine._send(("cancel", call_id))
            self.engine._replies.pop(call_id, None)


def _result(name: str, reply: tuple) -> Any:
    """A call's value, or its error raised as the caller expects it."""
    if reply[0] == "result":
        return reply[2]
    _, _, kind, message = reply
    if kind == "generation":
        raise GenerationError(message)
    raise ModelError(f"{name}: {message}")


# The model's side, in its own process


def serve(conn: Connection, folder: Path, name: str) -> None:
    """Load the model, then answer until the API closes its end."""
    try:
        engine = ChatEngine(folder, name)
    except Exception as exc:  # noqa: BLE001 (reported to the API, which raises ModelError)
        conn.send(("failed", str(exc)))
        return
    conn.send(("ready", {"context_length": engine.context_length, "vocab_size": engine.vocab_size,
                         "has_template": engine.has_template}))  # fmt: skip
    lock = threading.Lock()
    cancels: dict[int, threading.Event] = {}

    def send(message: tuple) -> None:
        with lock:
            conn.send(message)

    def answer(method: str, call_id: int, *args: Any) -> None:
        try:
            send(("result", call_id, _method(engine, method, *args)))
        except GenerationError as exc:
            send(("error", call_id, "generation", str(exc)))
        except Exception as exc:  # noqa: BLE001 (the API raises it as ModelError)
            log.exception("chat call %s failed", method)
            send(("error", call_id, "model", str(exc)))

    def generate(call_id: int, prompt_ids: list[int], sampling: Sampling) -> None:
        generation = engine.generate(prompt_ids, sampling, cancels[call_id])
        sent = 0
        try:
            for text in generation:
                fresh = generation.logprobs[sent:]
                sent += len(fresh)
                send(("delta", call_id, text, fresh))
            send(("end", call_id, generation.finish_reason, generation.completion_tokens))
        except Exception as exc:  # noqa: BLE001 (ends the API's stream with an error event)
            log.exception("generation failed")
            send(("error", call_id, "model", f"the generation failed: {exc}"))
        finally:
            cancels.pop(call_id, None)

    calls = ThreadPoolExecutor(max_workers=2, thread_name_prefix="call")
    generations = ThreadPoolExecutor(max_workers=1, thread_name_prefix="generate")  # in arrival order
    while True:
        try:
            method, call_id, *args = conn.recv()
        except (EOFError, OSError):
            break
        if method == "cancel":
            if event := cancels.get(call_id):  # gone already if the generation just ended
                event.set()
        elif method == "generate":
            cancels[call_id] = threading.Event()
            generations.submit(generate, call_id, *args)
        else:
            calls.submit(answer, method, call_id, *args)
    for event in list(cancels.values()):
        event.set()
    os._exit(0)  # the API is gone: do not wait for a generation nobody reads


def _method(engine: ChatEngine, method: str, *args: Any) -> Any:
    if method == "prompt_ids":
        return engine.encode(engine.render(args[0]))
    if method == "count":
        return len(engine.encode(engine.render(args[0])))
    if method == "encode":
        return engine.encode(args[0])
    if method == "check":
        return engine.check(args[0])
    raise ValueError(f"unknown call {method!r}")


if __name__ == "__main__":
    fd, model_folder, model_name, nice = sys.argv[1:5]
    logging.basicConfig(level=logging.WARNING, format=f"chat[{model_name}] %(levelname)s %(message)s")
    os.nice(int(nice))  # below the API's event loop, as the embedding forwards are
    serve(Connection(int(fd)), Path(model_folder), model_name)
