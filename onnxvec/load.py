"""Loaders: files, folders, globs and stdin to documents (text + metadata), or a reason they can't be.

A bad file never stops a batch: it becomes a document carrying its error (binary, not UTF-8, empty,
too large), which the store records as failed while the rest go on. Types we can't read at all are
returned separately so the caller can report them.
"""

from __future__ import annotations

import csv
import glob
import hashlib
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

TEXT_TYPES = {".txt", ".md", ".markdown", ".rst"}
RECORD_TYPES = {".json", ".jsonl", ".ndjson", ".csv"}
SUPPORTED = TEXT_TYPES | RECORD_TYPES | {".html", ".htm"}


@dataclass(frozen=True)
class LoadOptions:
    id_field: str = "id"
    text_field: str = "text"
    metadata_fields: tuple[str, ...] | None = None  # None: every other field of a record
    max_bytes: int = 10 * 1024 * 1024
    extra_metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SourceDocument:
    external_id: str
    source: str
    text: str
    metadata: dict[str, Any]
    error: str | None = None

    @property
    def content_hash(self) -> str:
        return hashlib.sha256((self.error or self.text).encode()).hexdigest()


def expand(specs: list[str]) -> tuple[list[Path], list[Path]]:
    """Files named by paths, folders (recursive) and globs: (supported, unsupported), sorted."""
    found: set[Path] = set()
    for spec in specs:
        matches = [Path(p) for p in glob.glob(spec, recursive=True)] or [Path(spec)]
        for path in matches:
            if path.is_dir():
                found.update(p for p in path.rglob("*") if p.is_file() and not _hidden(p, path))
            elif path.exists():
                found.add(path)
            else:
                raise FileNotFoundError(f"no such file or folder: {spec}")
    files = sorted(p.resolve() for p in found)
    return [p for p in files if p.suffix.lower() in SUPPORTED], [p for p in files if p.suffix.lower() not in SUPPORTED]


def _hidden(path: Path, root: Path) -> bool:
    return any(part.startswith(".") for part in path.relative_to(root).parts)


def load_file(path: Path, options: LoadOptions) -> list[SourceDocument]:
    """One file to its documents: one for text and HTML, one per record for JSON, JSONL and CSV."""
    stat = path.stat()
    meta = {"path": str(path), "mtime": int(stat.st_mtime), "bytes": stat.st_size, **options.extra_metadata}
    source = path.as_uri()
    if stat.st_size > options.max_bytes:
        error = f"file is {stat.st_size / 1e6:.1f} MB, over the {options.max_bytes / 1e6:.1f} MB limit"
        return [SourceDocument(str(path), source, "", meta, error)]
    try:
        text = decode(path.read_bytes())
    except ValueError as exc:
        return [SourceDocument(str(path), source, "", meta, str(exc))]
    return parse(text, path.suffix.lower(), str(path), source, meta, options)


def load_stdin(data: bytes, kind: str, options: LoadOptions) -> list[SourceDocument]:
    """Standard input as one text document (kind .txt, .md, .html) or records (.jsonl, .json, .csv)."""
    digest = hashlib.sha256(data).hexdigest()[:16]
    meta = {"path": "-", "bytes": len(data), **options.extra_metadata}
    if len(data) > options.max_bytes:
        return [SourceDocument(f"stdin:{digest}", "stdin", "", meta, "standard input is over the size limit")]
    try:
        text = decode(data)
    except ValueError as exc:
        return [SourceDocument(f"stdin:{digest}", "stdin", "", meta, str(exc))]
    return parse(text, kind, f"stdin:{digest}", "stdin", meta, options)


def decode(data: bytes) -> str:
    """UTF-8 text, or ValueError saying why not (binary content, invalid UTF-8)."""
    if b"\x00" in data[:8192]:
        raise ValueError("binary file (NUL bytes), not text")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ValueError(f"not valid UTF-8: byte 0x{data[exc.start]:02x} at offset {exc.start}") from exc


def parse(
    text: str, kind: str, external_id: str, source: str, meta: dict[str, Any], options: LoadOptions
) -> list[SourceDocument]:
    if kind in RECORD_TYPES:
        return list(_records(text, kind, external_id, source, meta, options))
    body = html_text(text) if kind in (".html", ".htm") else text
    error = None if body.strip() else "empty text"
    return [SourceDocument(external_id, source, body, meta | {"type": kind.lstrip(".")}, error)]


def _records(
    text: str, kind: str, external_id: str, source: str, meta: dict[str, Any], options: LoadOptions
) -> Iterator[SourceDocument]:
    try:
        rows = list(_rows(text, kind))
    except (ValueError, csv.Error) as exc:
        yield SourceDocument(external_id, source, "", meta, f"unreadable {kind.lstrip('.')}: {exc}")
        return
    for number, row in enumerate(rows, start=1):
        record_id = row.get(options.id_field, number) if isinstance(row, dict) else number
        doc_id = f"{external_id}#{record_id}"
        if not isinstance(row, dict):
            yield SourceDocument(doc_id, source, "", meta, f"record {number} is not an object")
            continue
        body = row.get(options.text_field)
        wanted = options.metadata_fields
        fields = {k: v for k, v in row.items() if k != options.text_field and (wanted is None or k in wanted)}
        record_meta = meta | fields | {"record": number}
        if not isinstance(body, str) or not body.strip():
            error = f"record {number} has no text in field {options.text_field!r}"
            yield SourceDocument(doc_id, source, "", record_meta, error)
        else:
            yield SourceDocument(doc_id, source, body, record_meta)


def _rows(text: str, kind: str) -> Iterator[Any]:
    if kind == ".csv":
        yield from csv.DictReader(io.StringIO(text))
    elif kind == ".json":
        data = json.loads(text)
        yield from data if isinstance(data, list) else [data]
    else:
        for line in text.splitlines():
            if line.strip():
                yield json.loads(line)


class _VisibleText(HTMLParser):
    """Collects the text a browser would show: no scripts, styles or head; blocks become lines."""

    HIDDEN = {"script", "style", "head", "noscript", "template", "svg"}
    BLOCKS = {"p", "div", "br", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "section", "article", "pre"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.hidden = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self.HIDDEN:
            self.hidden += 1
        elif tag in self.BLOCKS:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in self.HIDDEN:
            self.hidden = max(0, self.hidden - 1)
        elif tag in self.BLOCKS:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if not self.hidden:
            self.parts.append(data)


def html_text(markup: str) -> str:
    parser = _VisibleText()
    parser.feed(markup)
    parser.close()
    lines = (" ".join(line.split()) for line in "".join(parser.parts).splitlines())
    return "\n".join(line for line in lines if line)
