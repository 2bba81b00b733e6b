"""`onnxvec serve | keys`: the HTTP side of the command line."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from onnxvec.cli import _database, _fail, app
from onnxvec.config import get_settings
from onnxvec.embedding.service import InvalidRequest
from onnxvec.storage import keys

keys_app = typer.Typer(no_args_is_help=True, help="API keys (stored as SHA-256 digests in Postgres).")
app.add_typer(keys_app, name="keys")


@app.command("serve")
def serve_command(
    host: Annotated[str | None, typer.Option(help="address to bind (default: ONNXVEC_API_HOST)")] = None,
    port: Annotated[int | None, typer.Option(help="port (default: ONNXVEC_API_PORT)")] = None,
) -> None:
    """Serve the OpenAI-compatible API (embeddings, models, search) with uvicorn."""
    import uvicorn

    from api.app import create_app
    from api.server import server_config

    settings = get_settings()
    config = server_config(
        create_app(settings),
        settings,
        host=host or settings.api_host,
        port=settings.api_port if port is None else port,
        log_level="info",
        access_log=settings.api_access_log,
    )
    uvicorn.Server(config).run()


@keys_app.command("create")
def keys_create(
    name: Annotated[str, typer.Argument(help="who or what the key is for")],
    collections: Annotated[
        str | None, typer.Option(help="comma-separated: the only collections this key sees (default: all)")
    ] = None,
    read_only: Annotated[
        bool, typer.Option("--read-only", help="embed, search and chat only: no route that writes")
    ] = False,
) -> None:
    """Create a key and print it once: only its digest is kept."""
    scope = [c.strip() for c in collections.split(",") if c.strip()] if collections is not None else None
    with _database(get_settings()).begin() as conn:
        key, plaintext = keys.create(conn, name, scope, read_only)
    typer.echo(plaintext)
    typer.echo(f"key {key.id} ({key.name}) created; it is shown only now", err=True)


@keys_app.command("list")
def keys_list(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    with _database(get_settings()).connect() as conn:
        rows = keys.list_keys(conn)
    if as_json:
        typer.echo(json.dumps([row.__dict__ for row in rows], default=str))
        return
    for row in rows:
        state = f"revoked {row.revoked_at:%Y-%m-%d %H:%M}" if row.revoked_at else "active"
        scope = "all collections" if row.collections is None else ", ".join(row.collections) or "no collection"
        access = "read-only" if row.read_only else "read-write"
        typer.echo(
            f"{row.id:>4}  {row.prefix}...  {row.name:<24} {row.created_at:%Y-%m-%d %H:%M}  {state}  {scope}  {access}"
        )


@keys_app.command("revoke")
def keys_revoke(key_id: int) -> None:
    """Revoke a key by id; servers stop accepting it within seconds."""
    with _database(get_settings()).begin() as conn:
        if not keys.revoke(conn, key_id):
            raise _fail(f"no active key with id {key_id}")
        live = keys.active_digests(conn)
    typer.echo(f"revoked key {key_id}")
    if not live:
        typer.echo(
            "no live database key is left: the API stays closed to every client without an ONNXVEC_API_KEYS key "
            "(create one with `onnxvec keys create NAME`; ONNXVEC_AUTH=off opens it to anyone)",
            err=True,
        )


@app.command("chat")
def chat_command(
    question: Annotated[str, typer.Argument(help="what to ask")],
    collection: Annotated[str | None, typer.Option(help="answer from this collection's documents")] = None,
    model: Annotated[str | None, typer.Option(help="chat model (default: ONNXVEC_CHAT_MODEL)")] = None,
    k: Annotated[int, typer.Option("-k", help="chunks to retrieve", min=1, max=50)] = 4,
    max_tokens: Annotated[int, typer.Option(min=1)] = 256,
    temperature: Annotated[float | None, typer.Option(min=0, max=2)] = None,
) -> None:
    """Ask a question; the answer streams as it is generated, then the sources it was given."""
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
        chat = ChatService(settings, _database(settings), embeddings)
        try:
            prepared = await chat.prepare(request)
            async for delta in chat.stream(chat.start(prepared, request.sampling)):
                typer.echo(delta, nl=False)
            typer.echo()
            for cite in prepared.citations():
                where = cite["source"] or cite["external_id"]
                typer.echo(f"[{cite['index']}] {where} (chunk {cite['chunk']}, score {cite['score']:.3f})")
        finally:
            await chat.close()
            await embeddings.close()

    try:
        asyncio.run(run())
    except InvalidRequest as exc:
        raise _fail(str(exc)) from exc
