"""What a pulled model is: its manifest (kind, files and their sha256, pooling, prefixes, precision),
read from a model folder, and the one check that a model can do what it is asked (embed, chat, rerank)."""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel

from onnxvec.errors import InvalidRequest, ModelError
from onnxvec.infra.cpu import Precision, cpu_signature

MANIFEST = "manifest.json"
log = logging.getLogger(__name__)
Pooling = Literal["mean", "cls", "max", "last"]
Kind = Literal["embedding", "chat", "reranker"]


class ModelManifest(BaseModel):
    """What onnxvec needs to know to use a model, written beside its files."""

    name: str
    kind: Kind
    files: dict[str, str]
    dims: int | None = None
    max_seq_length: int | None = None
    context_length: int | None = None
    pooling: Pooling | None = None
    normalize: bool = True
    distance_metrics: list[str] = ["cosine", "ip", "l2"]
    query_prefix: str = ""
    passage_prefix: str = ""
    onnx_file: str | None = None
    tokenizer_file: str | None = None
    precision: Precision | None = None
    source: dict[str, Any]
    created_at: str

    def runnable_onnx_file(self) -> str | None:
        """The int8 file where its quality was measured on this kind of CPU; the fp32 file elsewhere
        (a model folder copied to, or an image built for, another machine must not run unmeasured int8)."""
        precision = self.precision
        if precision is None or precision.fallback_onnx_file is None or precision.cpu == cpu_signature():
            return self.onnx_file
        log.warning(
            "%s: %s was measured on a %s CPU, this one is %s: running fp32; `onnxvec models pull %s --force` "
            "measures here",
            self.name,
            precision.variant,
            precision.cpu,
            cpu_signature(),
            self.name,
        )
        return precision.fallback_onnx_file


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _first(folder: Path, candidates: list[str], pattern: str) -> str | None:
    for name in candidates:
        if (folder / name).is_file():
            return name
    found = sorted(p.relative_to(folder).as_posix() for p in folder.rglob(pattern))
    return found[0] if found else None


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text()) if path.is_file() else {}
    except (ValueError, UnicodeDecodeError) as exc:
        raise ModelError(f"{path.name} is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ModelError(f"{path.name} holds {type(data).__name__}, not a JSON object")
    return data


def _onnx_output_dims(path: Path) -> int | None:
    import onnxruntime as ort

    try:
        shape = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).get_outputs()[0].shape
    except Exception as exc:  # onnxruntime raises its own untyped errors for a bad file
        raise ModelError(f"{path.name} is not a loadable ONNX model: {exc}") from exc
    return shape[-1] if isinstance(shape[-1], int) else None


def is_cross_encoder(config: dict[str, Any]) -> bool:
    """A Hugging Face config of a sequence classifier (a cross-encoder scores a (query, document) pair)."""
    return any(str(name).endswith("ForSequenceClassification") for name in config.get("architectures") or [])


def describe_folder(folder: Path, kind: Kind | None = None) -> dict[str, Any]:
    """Infer a model's manifest fields from the files a hub or sentence-transformers folder carries;
    the kind from config.json's architectures unless given."""
    genai = _read_json(folder / "genai_config.json")
    if genai:
        return {
            "kind": "chat",
            "context_length": genai.get("model", {}).get("context_length"),
            "tokenizer_file": _tokenizer(folder),
            "pooling": None,
        }
    onnx_file = _first(folder, ["model.onnx", "onnx/model.onnx"], "*.onnx")
    if onnx_file is None:
        raise ModelError(f"{folder} holds neither an ONNX model nor genai_config.json")
    config = _read_json(folder / "config.json")
    st_config = _read_json(folder / "sentence_bert_config.json")
    pool_cfg = _read_json(folder / "1_Pooling" / "config.json")
    pooling = next(
        (
            mode
            for key, mode in [
                ("pooling_mode_cls_token", "cls"),
                ("pooling_mode_max_tokens", "max"),
                ("pooling_mode_lasttoken", "last"),
            ]
            if pool_cfg.get(key)
        ),
        "mean",
    )
    max_len = st_config.get("max_seq_length") or config.get("max_position_embeddings")
    dims = _onnx_output_dims(folder / onnx_file)
    if kind == "reranker" or (kind is None and is_cross_encoder(config)):
        if dims != 1:  # relevance is one logit per pair; a multi-label classifier is no reranker
            raise ModelError(f"{onnx_file} outputs {dims} values per input; a reranker outputs one logit")
        return {
            "kind": "reranker",
            "onnx_file": onnx_file,
            "tokenizer_file": _tokenizer(folder),
            "max_seq_length": max_len,
        }
    said = config.get("hidden_size")
    if dims and said and dims != said:  # the vectors are what the ONNX file computes: a lie here broke writes
        raise ModelError(f"config.json says hidden_size {said}, but {onnx_file} outputs {dims} dimensions")
    return {
        "kind": "embedding",
        "onnx_file": onnx_file,
        "tokenizer_file": _tokenizer(folder),
        "dims": dims or said,
        "max_seq_length": max_len,
        "pooling": pooling,
    }


def _tokenizer(folder: Path) -> str | None:
    return _first(folder, ["tokenizer.json"], "tokenizer.json")


def _a(word: str) -> str:
    return ("an " if word[0] in "aeiou" else "a ") + word


def require(manifest: ModelManifest, kind: Kind) -> ModelManifest:
    """The manifest, if it is a `kind` model onnxvec can run: the one check for every caller. Another
    kind is the request's mistake (InvalidRequest on `model`); an embedding model or reranker without
    its files is a broken model (ModelError)."""
    if manifest.kind != kind:
        message = f"The model '{manifest.name}' is {_a(manifest.kind)} model, not {_a(kind)} model."
        raise InvalidRequest(message, "model")
    if kind == "embedding" and not (manifest.onnx_file and manifest.tokenizer_file and manifest.dims):
        raise ModelError(f"{manifest.name} is not an embedding model with an ONNX file, tokenizer.json and dims")
    if kind == "reranker" and not (manifest.onnx_file and manifest.tokenizer_file):
        raise ModelError(f"{manifest.name} is not a reranker with an ONNX file and tokenizer.json")
    return manifest
