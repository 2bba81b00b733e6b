"""The architecture as the README's Layout states it: imports inside onnxvec/ flow one way, down the
layers below, and the core never imports its shells (api/, worker/). Read from the source, so an
import inside a function counts too."""

from __future__ import annotations

import ast
from pathlib import Path

from onnxvec.config import PROJECT_ROOT

# lowest first: a module may import its own layer and those before it, never one after it
LAYERS = [
    ["onnxvec.config", "onnxvec.errors", "onnxvec.values"],
    ["onnxvec.infra"],
    ["onnxvec.models.catalog", "onnxvec.models.manifest", "onnxvec.models.store"],
    ["onnxvec.embedding"],
    ["onnxvec.models.build", "onnxvec.models.pull"],  # building and pulling measure with the engine
    ["onnxvec.sources"],
    ["onnxvec.storage"],
    ["onnxvec.ingest", "onnxvec.retrieval"],
    ["onnxvec.chat"],
    ["onnxvec.cli", "onnxvec.__main__"],
]


def _layer(module: str) -> int:
    for index, prefixes in enumerate(LAYERS):
        if any(module == p or module.startswith(p + ".") for p in prefixes):
            return index
    raise AssertionError(f"{module} is in no layer: add it to LAYERS (and to the README's Layout)")


def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found |= {node.module} | {f"{node.module}.{alias.name}" for alias in node.names}
    return found


def _module(path: Path) -> str:
    parts = path.relative_to(PROJECT_ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def test_imports_flow_down_the_layers_and_never_into_the_shells() -> None:
    wrong = []
    for path in sorted((PROJECT_ROOT / "onnxvec").rglob("*.py")):
        module = _module(path)
        for imported in _imports(path):
            top = imported.split(".")[0]
            if top in ("api", "worker"):
                wrong.append(f"{module} imports the shell {imported}")
            elif top == "onnxvec" and imported != "onnxvec" and _layer(imported) > _layer(module):
                wrong.append(f"{module} (layer {_layer(module)}) imports {imported} (layer {_layer(imported)})")
    assert not wrong, "\n".join(wrong)
    assert len(list((PROJECT_ROOT / "onnxvec").glob("*.py"))) <= 6  # the rest lives in its stage's package


def test_no_import_cycles() -> None:
    """Within a layer too: no module reaches itself through its imports (onnxvec, api and worker)."""
    modules = {
        _module(path): path
        for folder in ("onnxvec", "api", "worker")
        for path in sorted((PROJECT_ROOT / folder).rglob("*.py"))
    }
    graph = {name: {m for m in _imports(path) if m in modules and m != name} for name, path in modules.items()}
    for start in graph:
        seen, pending = set(), list(graph[start])
        while pending:
            module = pending.pop()
            assert module != start, f"{start} imports itself through {sorted(seen)}"
            if module not in seen:
                seen.add(module)
                pending += graph[module]
