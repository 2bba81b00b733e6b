"""Which kind of CPU this is, as far as int8 goes, and which variant of an encoder runs on it.

ONNX Runtime's integer kernels take another path per CPU family, so int8 vectors and int8 speed move
with it: a variant chosen by measuring (onnxvec/models/build/precision.py) is only trusted on the family it was
measured on.
"""

from __future__ import annotations

import platform
from pathlib import Path

from pydantic import BaseModel


def cpu_signature() -> str:
    """The integer-kernel family ONNX Runtime takes on this CPU: int8 vectors and int8 speed move with it."""
    try:
        flags = set(Path("/proc/cpuinfo").read_text().split())
    except OSError:
        return platform.machine()
    for flag, name in [
        ("amx_int8", "amx"),
        ("avx512_vnni", "avx512-vnni"),
        ("avx_vnni", "avx-vnni"),
        ("avx512bw", "avx512"),
        ("avx2", "avx2"),
    ]:
        if flag in flags:
            return name
    return platform.machine()


class Precision(BaseModel):
    """Which variant of an encoder runs, measured on the CPU named here (onnxvec/models/build/precision.py)."""

    variant: str  # "fp32" or an int8 scheme
    cpu: str
    reason: str
    measured: dict[str, dict[str, float]]  # variant -> min_cosine, mean_cosine, speedup over fp32
    fallback_onnx_file: str | None = None  # the fp32 file, kept beside an int8 choice
