"""`onnxvec services | db | up`: the embedded servers, the schema, and everything at once."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
from typing import Annotated

import typer

from onnxvec.cli.common import app, fail
from onnxvec.config import get_settings
from onnxvec.infra import db, embedded
from onnxvec.models.pull import pull
from onnxvec.models.store import ModelStore

services_app = typer.Typer(no_args_is_help=True, help="Embedded PostgreSQL+pgvector and Redis.")
db_app = typer.Typer(no_args_is_help=True, help="Schema migrations (Alembic).")
app.add_typer(services_app, name="services")
app.add_typer(db_app, name="db")


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


@app.command()
def up() -> None:
    """Start everything (services, schema, default model, a worker, the API) in the foreground; Ctrl-C stops it."""
    settings = get_settings()
    endpoints = embedded.ensure_services(settings)
    db.upgrade(db.make_engine(endpoints.database_url))
    manifest = pull(ModelStore(settings.models_dir), settings.embedding_model)
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
        raise fail(", ".join(f"the {name} exited with status {code}" for name, code in crashed.items()))
