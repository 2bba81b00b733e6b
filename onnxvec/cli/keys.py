"""`onnxvec keys`: API keys, created (shown once), listed and revoked."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from onnxvec.cli.common import app, database, fail
from onnxvec.config import get_settings
from onnxvec.storage import keys

keys_app = typer.Typer(no_args_is_help=True, help="API keys (stored as SHA-256 digests in Postgres).")
app.add_typer(keys_app, name="keys")


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
    with database(get_settings()).begin() as conn:
        key, plaintext = keys.create(conn, name, scope, read_only)
    typer.echo(plaintext)
    typer.echo(f"key {key.id} ({key.name}) created; it is shown only now", err=True)


@keys_app.command("list")
def keys_list(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    with database(get_settings()).connect() as conn:
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
    with database(get_settings()).begin() as conn:
        if not keys.revoke(conn, key_id):
            raise fail(f"no active key with id {key_id}")
        live = keys.active_digests(conn)
    typer.echo(f"revoked key {key_id}")
    if not live:
        typer.echo(
            "no live database key is left: the API stays closed to every client without an ONNXVEC_API_KEYS key "
            "(create one with `onnxvec keys create NAME`; ONNXVEC_AUTH=off opens it to anyone)",
            err=True,
        )
