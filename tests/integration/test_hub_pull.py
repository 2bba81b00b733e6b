"""Hub pulls against a loopback stand-in for the Hugging Face hub's download routes (no internet needed)."""

from __future__ import annotations

import hashlib
import json
import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

import numpy as np
import pytest
from huggingface_hub import constants

from onnxvec.config import Settings
from onnxvec.embedding.engine import EmbeddingEngine
from onnxvec.errors import ModelError
from onnxvec.models.manifest import sha256_file
from onnxvec.models.pull import pull_hub
from onnxvec.models.store import ModelStore

REPO = "acme/minilm-onnx"
COMMIT = "1f3c5e7a9b2d4f6a8c0e1f3a5b7d9e2c4a6b8d0f"
TOKEN = "hf_loopback_test_token"
INCLUDE = ["onnx/*", "*.json", "1_Pooling/*"]
WANTED = {
    "onnx/model.onnx",
    "tokenizer.json",
    "config.json",
    "sentence_bert_config.json",
    "1_Pooling/config.json",
}
LFS = {"onnx/model.onnx", "pytorch_model.bin"}  # served as git-lfs files are: the ETag is the sha256
# huggingface_hub settings a developer's shell may carry that would change what the tests see
UNSET_ENV = (
    "HF_HUB_OFFLINE",
    "TRANSFORMERS_OFFLINE",
    "HF_TOKEN",
    "HUGGING_FACE_HUB_TOKEN",
    "HF_OIDC_RESOURCE",
)
SENTENCES = ["The cat sits on the mat.", "Embeddings map text to vectors."]


def _git_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


class FakeHub(ThreadingHTTPServer):
    """One public model repo on 127.0.0.1; remembers (method, path, Authorization) of every request."""

    daemon_threads = True

    def __init__(self, files: dict[str, bytes]) -> None:
        super().__init__(("127.0.0.1", 0), _HubHandler)
        self.files = files
        self.requests: list[tuple[str, str, str | None]] = []
        self.etags = {f: hashlib.sha256(d).hexdigest() if f in LFS else _git_sha1(d) for f, d in files.items()}
        folders = sorted({f.rsplit("/", 1)[0] for f in files if "/" in f})
        self.tree = [{"type": "directory", "path": d, "oid": _git_sha1(d.encode()), "size": 0} for d in folders]
        for name, data in sorted(files.items()):
            entry = {"type": "file", "path": name, "oid": _git_sha1(data), "size": len(data)}
            if name in LFS:
                entry["lfs"] = {"oid": self.etags[name], "size": len(data), "pointerSize": 134}
            self.tree.append(entry)


class _HubHandler(BaseHTTPRequestHandler):
    """The routes snapshot_download uses: repo info, recursive tree listing, HEAD and GET of /resolve/."""

    server: FakeHub
    timeout = 10  # a stuck client cannot hold a worker thread forever

    def log_message(self, *args: object) -> None:  # keep the access log out of the test output
        pass

    def do_HEAD(self) -> None:
        self._route()

    def do_GET(self) -> None:
        self._route()

    def _route(self) -> None:
        self.server.requests.append((self.command, self.path, self.headers.get("Authorization")))
        path = unquote(urlsplit(self.path).path)
        if api := re.fullmatch(r"/api/models/([^/]+/[^/]+)/(revision|tree)/([^/]+)", path):
            repo, route, revision = api.groups()
            info = {"id": REPO, "sha": COMMIT, "siblings": [{"rfilename": f} for f in self.server.files]}
            if self._known(repo, revision):
                self._send(200, json.dumps(info if route == "revision" else self.server.tree).encode())
        elif resolve := re.fullmatch(r"/([^/]+/[^/]+)/resolve/([^/]+)/(.+)", path):
            repo, revision, name = resolve.groups()
            if not self._known(repo, revision):
                return
            if name not in self.server.files:
                self._error("EntryNotFound", "Entry not found")
                return
            headers = {"ETag": f'"{self.server.etags[name]}"', "Content-Type": "application/octet-stream"}
            self._send(200, self.server.files[name], headers)
        else:
            self._error("", "Not found")

    def _known(self, repo: str, revision: str) -> bool:
        if repo != REPO:
            self._error("RepoNotFound", "Repository not found")
        elif revision not in ("main", COMMIT):
            self._error("RevisionNotFound", "Invalid rev id")
        return repo == REPO and revision in ("main", COMMIT)

    def _error(self, code: str, message: str) -> None:
        headers = {"X-Error-Message": message} | ({"X-Error-Code": code} if code else {})
        self._send(404, json.dumps({"error": message}).encode(), headers)

    def _send(self, status: int, data: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        base = {"Content-Type": "application/json", "Content-Length": str(len(data)), "X-Repo-Commit": COMMIT}
        for key, value in (base | (headers or {})).items():
            self.send_header(key, value)
        self.end_headers()
        if self.command == "GET":
            self.wfile.write(data)


def _point_hub_at(endpoint: str, hf_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Environment for huggingface_hub, and the module constants it computed from it at import time."""
    for var, value in {"HF_ENDPOINT": endpoint, "HF_HOME": str(hf_home), "HF_HUB_DISABLE_XET": "1"}.items():
        monkeypatch.setenv(var, value)
    for var in ("NO_PROXY", "no_proxy"):
        monkeypatch.setenv(var, "127.0.0.1,localhost")
    for var in UNSET_ENV:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(constants, "ENDPOINT", endpoint)
    monkeypatch.setattr(
        constants, "HUGGINGFACE_CO_URL_TEMPLATE", f"{endpoint}/{{repo_id}}/resolve/{{revision}}/{{filename}}"
    )
    for name, value in {
        "HF_HUB_CACHE": str(hf_home / "hub"),
        "HF_TOKEN_PATH": str(hf_home / "token"),
        "HF_STORED_TOKENS_PATH": str(hf_home / "stored_tokens"),
        "HF_HUB_DISABLE_XET": True,
        "HF_HUB_OFFLINE": False,
        "HF_HUB_DISABLE_IMPLICIT_TOKEN": False,
    }.items():
        monkeypatch.setattr(constants, name, value, raising=False)


def _serve(files: dict[str, bytes], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeHub]:
    """Serve `files` as one hub repo on loopback, with huggingface_hub pointed at it, until the test ends."""
    server = FakeHub(files)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    _point_hub_at(f"http://127.0.0.1:{server.server_port}", tmp_path / "hf-home", monkeypatch)
    yield server
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


@pytest.fixture
def hub(model_store: ModelStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeHub]:
    """The default model laid out as a sentence-transformers hub repo, served until the test ends."""
    src = model_store.path("all-MiniLM-L6-v2")
    pooling = {"word_embedding_dimension": 384, "pooling_mode_mean_tokens": True}
    files = {
        "onnx/model.onnx": (src / "model.onnx").read_bytes(),
        "tokenizer.json": (src / "tokenizer.json").read_bytes(),
        "config.json": json.dumps({"hidden_size": 384, "max_position_embeddings": 512}).encode(),
        "sentence_bert_config.json": json.dumps({"max_seq_length": 256}).encode(),
        "1_Pooling/config.json": json.dumps(pooling).encode(),
        "README.md": b"# minilm-onnx\n",
        "pytorch_model.bin": b"not a real checkpoint\0" * 64,
    }
    yield from _serve(files, tmp_path, monkeypatch)


def test_pull_hub_with_include_patterns(
    hub: FakeHub, tmp_path: Path, settings: Settings, embedder: EmbeddingEngine
) -> None:
    store = ModelStore(tmp_path / "models")
    manifest = pull_hub(store, "hub-minilm", REPO, revision="main", include=INCLUDE)
    assert manifest.kind == "embedding" and manifest.onnx_file == "onnx/model.onnx"
    assert manifest.tokenizer_file == "tokenizer.json"
    assert manifest.dims == 384 and manifest.max_seq_length == 256 and manifest.pooling == "mean"
    assert manifest.source == {
        "type": "hub",
        "repo_id": REPO,
        "revision": "main",
        "commit": COMMIT,
        "include": INCLUDE,
    }
    assert set(manifest.files) == WANTED
    folder = store.path("hub-minilm")
    on_disk = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}
    assert on_disk == WANTED | {"manifest.json"}  # no README.md, no pytorch_model.bin, no .cache/
    for name, digest in manifest.files.items():
        assert sha256_file(folder / name) == digest == hashlib.sha256(hub.files[name]).hexdigest()
    assert not [path for _, path, _ in hub.requests if "pytorch_model.bin" in path or "README.md" in path]
    assert {auth for _, _, auth in hub.requests} == {None}  # no token configured, none leaked from the host
    # the model and the shared cl100k_base encoding (onnxvec/embedding/openai_tokens.py), no staging leftovers
    assert sorted(p.name for p in store.root.iterdir()) == [".tiktoken", "hub-minilm"]

    engine = EmbeddingEngine(store.get("hub-minilm"), store, settings)
    np.testing.assert_allclose(engine.embed(SENTENCES).vectors, embedder.embed(SENTENCES).vectors, atol=1e-6)


def test_hf_token_is_sent(hub: FakeHub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    manifest = pull_hub(ModelStore(tmp_path / "models"), "hub-minilm", REPO, include=["*.json", "onnx/*"])
    assert manifest.source["revision"] is None and manifest.source["commit"] == COMMIT and set(manifest.files) == WANTED
    routes = {(method, "resolve" if "/resolve/" in path else path.split("/")[5]) for method, path, _ in hub.requests}
    assert routes == {("GET", "revision"), ("GET", "tree"), ("HEAD", "resolve"), ("GET", "resolve")}
    assert {auth for _, _, auth in hub.requests} == {f"Bearer {TOKEN}"}


def test_unknown_repo_leaves_nothing_behind(hub: FakeHub, tmp_path: Path) -> None:
    store = ModelStore(tmp_path / "models")
    with pytest.raises(ModelError, match="no-such-repo"):
        pull_hub(store, "ghost", "acme/no-such-repo", include=INCLUDE)
    assert list(store.root.iterdir()) == []  # neither ghost/ nor a .pull-ghost-* staging folder
    assert [(m, p) for m, p, _ in hub.requests] == [("GET", "/api/models/acme/no-such-repo/revision/main")]


PHI_LIKE = "cpu_and_mobile/cpu-int4-awq-block-128-acc-level-4"


@pytest.fixture
def chat_hub(
    model_store: ModelStore, tiny_chat: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[FakeHub]:
    """The tiny chat model laid out as Phi-3.5-mini-instruct-onnx is: one genai folder per variant."""
    src = model_store.path(tiny_chat)
    files = {f"{PHI_LIKE}/{p.name}": p.read_bytes() for p in src.iterdir() if p.name != "manifest.json"}
    files["cuda/cuda-fp16/genai_config.json"] = b"{}"  # another variant, not wanted
    files["README.md"] = b"# tiny chat\n"
    yield from _serve(files, tmp_path, monkeypatch)


def test_pull_a_chat_model_from_the_hub(chat_hub: FakeHub, tmp_path: Path) -> None:
    from onnxvec.chat.generate import ChatEngine, Sampling

    store = ModelStore(tmp_path / "models")
    manifest = pull_hub(store, "hub-chat", REPO, include=[f"{PHI_LIKE}/*"])
    assert manifest.kind == "chat" and manifest.context_length == 1024
    assert "genai_config.json" in manifest.files and not any("/" in name for name in manifest.files)
    engine = ChatEngine(store.path("hub-chat"), "hub-chat")
    prompt = engine.encode(engine.render([{"role": "user", "content": "hi"}]))
    generation = engine.generate(prompt, Sampling(max_tokens=3, min_tokens=3), threading.Event())
    assert "".join(generation) and generation.completion_tokens == 3
    with pytest.raises(ModelError, match="narrow it"):
        pull_hub(store, "hub-both", REPO, include=[f"{PHI_LIKE}/*", "cuda/*"])


@pytest.fixture
def rerank_hub(
    model_store: ModelStore, tiny_reranker: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[FakeHub]:
    """The tiny cross-encoder laid out as cross-encoder/ms-marco-MiniLM-L-6-v2 is: PyTorch weights at the
    top, ONNX variants under onnx/."""
    src = model_store.path(tiny_reranker)
    files = {name: (src / name).read_bytes() for name in ("config.json", "tokenizer.json", "tokenizer_config.json")}
    files["onnx/model.onnx"] = (src / "model.onnx").read_bytes()
    files["onnx/model_qint8_avx512.onnx"] = b"another variant, not wanted"
    files["pytorch_model.bin"] = b"not a real checkpoint\0" * 64
    yield from _serve(files, tmp_path, monkeypatch)


def test_pull_a_reranker_from_the_hub(
    rerank_hub: FakeHub, tmp_path: Path, settings: Settings, model_store: ModelStore, tiny_reranker: str
) -> None:
    """`models pull --hf` of a cross-encoder: the kind read from config.json's architectures, and the
    pulled model scores pairs as the converted one does."""
    from onnxvec.embedding.crossencoder import CrossEncoder

    store = ModelStore(tmp_path / "models")
    manifest = pull_hub(store, "hub-reranker", REPO, include=["onnx/model.onnx", "*.json"])
    assert (manifest.kind, manifest.onnx_file, manifest.dims) == ("reranker", "onnx/model.onnx", None)
    pulled = CrossEncoder(manifest, store, settings)
    converted = CrossEncoder(model_store.get(tiny_reranker), model_store, settings)
    pairs = pulled.tokenizer.encode_pairs("where are the vectors?", SENTENCES).ids
    assert pulled.forward(pairs).shape == (2, 1)
    np.testing.assert_array_equal(pulled.forward(pairs), converted.forward(pairs))
