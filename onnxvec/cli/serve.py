"""`onnxvec serve | chat`: the HTTP API, and a question answered from the command line."""

from __future__ import annotations

from typing import Annotated

import typer

from onnxvec.cli.common import app, become, database
from onnxvec.config import get_settings


@app.command("serve")
def serve_command(
    host: Annotated[str | None, typer.Option(help="address to bind (default: ONNXVEC_API_HOST)")] = None,
    port: Annotated[int | None, typer.Option(help="port (default: ONNXVEC_API_PORT)")] = None,
) -> None:
    """Serve the OpenAI-compatible API (embeddings, models, search, chat) with uvicorn."""
    options = (["--host", host] if host else []) + (["--port", str(port)] if port is not None else [])
    become("api", options)


@app.command("chat")
def chat_command(
    question: Annotated[str, typer.Argument(help="what to ask")],
    collection: Annotated[str | None, typer.Option(help="answer from this collection's documents")] = None,
    model: Annotated[str | None, typer.Option(help="chat model (default: ONNXVEC_CHAT_MODEL)")] = None,
    k: Annotated[int, typer.Option("-k", help="chunks to retrieve", min=1, max=50)] = 4,
    max_tokens: Annotated[int, typer.Option(min=1)] = 256,
    temperature: Annotated[float | None, typer.Option(min=0, max=2)] = None,
) -> None:
    """Ask a question; the answer streams as it is generated, then the sources it was given, marking
    those it cites."""
    import asyncio

    from onnxvec.chat.generate import Sampling
    from onnxvec.chat.service import ChatRequest, ChatService
    from onnxvec.embedding.service import EmbeddingService

    settings = get_settings()
    request = ChatRequest(
        messages=[{"role": "user", "content": question}],
        model=model,
        sampling=Sampling(max_tokens=max_tokens, temperature=temperature),
        collection=collection or settings.chat_collection,
        k=k,
    )

    async def run() -> None:
        embeddings = EmbeddingService(settings)
        chat = ChatService(settings, database(settings), embeddings)
        try:
            prepared = await chat.prepare(request)
            answer = ""
            async for delta in chat.stream(chat.start(prepared, request.sampling)):
                answer += delta
                typer.echo(delta, nl=False)
            typer.echo()
            used = {cite["index"]: cite["evidence"] for cite in prepared.citations([answer])}
            for cite in prepared.retrieved():
                where = cite["source"] or cite["external_id"]
                cited = f", cited ({used[cite['index']]})" if cite["index"] in used else ""
                typer.echo(f"[{cite['index']}] {where} (chunk {cite['chunk']}, score {cite['score']:.3f}{cited})")
        finally:
            await chat.close()
            await embeddings.close()

    asyncio.run(run())
