"""The prompt for a chat request: retrieved chunks as labelled context, trimmed to the context window.

The numbered sources go into the last user message, before the instructions and the question, so the
question is the last thing the model reads (bench/rag.py measures the prompt: README, Benchmarks).
Where the last message is not the user's, they go into the system message. When everything does not
fit, the oldest history goes first, then the lowest-ranked sources; the system message and the last
message always stay.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from onnxvec.errors import PromptTooLong
from onnxvec.storage.chunks import Hit

# Asked to cite, the default 0.5B model sometimes answers "[1]" and nothing else; the RAG sampling
# forbids an answer that begins with a marker (onnxvec/chat/service.py: ANSWER_FIRST), so it states
# the answer and may cite after it. bench/rag.py measured these words against three others (README).
INSTRUCTIONS = (
    "Answer the question briefly, using only the numbered sources above, and cite the source you use as [1], "
    "[2], ... If the sources do not contain the answer, say that they do not."
)

Message = dict[str, str]


@dataclass(frozen=True)
class Prompt:
    messages: list[Message]
    sources: list[Hit]  # the retrieved chunks that made it into the prompt, numbered from 1
    dropped_messages: int


def label(hit: Hit) -> str:
    """What a source is called in the prompt: its page title and section when it has them (words the
    model can use), else where it came from."""
    section = hit.section or ""
    title = hit.title if hit.title and not section.startswith(hit.title) else ""
    return " › ".join(part for part in (title, section) if part) or hit.source or hit.external_id


def context_block(hits: Sequence[Hit]) -> str:
    """The sources as the model sees them: number, name, text; then what to do with them."""
    lines = ["Sources:"]
    for number, hit in enumerate(hits, start=1):
        lines.append(f"[{number}] ({label(hit)}) {hit.text.strip()}")
    return "\n".join([*lines, "", INSTRUCTIONS])


def with_context(messages: Sequence[Message], hits: Sequence[Hit]) -> list[Message]:
    """The messages with the sources put before the last user message's question (or, when the last
    message is not the user's, added to the system message, which is created if there is none)."""
    if not hits:
        return list(messages)
    block = context_block(hits)
    if messages and messages[-1]["role"] == "user":
        question = {"role": "user", "content": f"{block}\n\nQuestion: {messages[-1]['content']}"}
        return [*messages[:-1], question]
    if messages and messages[0]["role"] == "system":
        return [{"role": "system", "content": messages[0]["content"] + "\n\n" + block}, *messages[1:]]
    return [{"role": "system", "content": block}, *messages]


def fit(messages: Sequence[Message], hits: Sequence[Hit], count: Callable[[list[Message]], int], budget: int) -> Prompt:
    """Messages with context that `count` (prompt tokens) says fit in `budget` tokens: the fewest oldest
    messages dropped (found by bisection, so a 10,000-message history costs ~14 counts, not 10,000),
    then the lowest-ranked sources."""
    system = [m for m in messages[:1] if m["role"] == "system"]
    history = list(messages[len(system) : -1])
    last = list(messages[-1:])

    def candidate(dropped: int, sources: Sequence[Hit]) -> list[Message]:
        return with_context([*system, *history[dropped:], *last], sources)

    low, high = 0, len(history)  # the least history to drop so that the prompt with every source fits
    while low < high:
        middle = (low + high) // 2
        if count(candidate(middle, hits)) <= budget:
            high = middle
        else:
            low = middle + 1
    sources = list(hits)
    while True:
        prompt = candidate(low, sources)
        tokens = count(prompt)
        if tokens <= budget:
            return Prompt(prompt, sources, low)
        if not sources:
            raise PromptTooLong(
                f"The last message (with the system message) needs {tokens} tokens; "
                f"this model's context leaves {budget} for the prompt."
            )
        sources.pop()
