"""Loaders: files, folders, globs and stdin to documents (text + metadata), or a reason they can't be.

A bad file never stops a batch: it becomes a document carrying its error (unreadable, not a regular
file, binary, not UTF-8, empty, too large, an HTML page that is an index; per record: broken JSON
lines, values PostgreSQL cannot store), which the store records as failed while the rest go on. Types
we can't read at all are returned separately so the caller can report them.
"""

from __future__ import annotations

import csv
import glob
import hashlib
import io
import json
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from onnxvec.sources.html import read_html
from onnxvec.values import unstorable

TEXT_TYPES = {".txt", ".md", ".markdown", ".rst"}
RECORD_TYPES = {".json", ".jsonl", ".ndjson", ".csv"}
SUPPORTED = TEXT_TYPES | RECORD_TYPES | {".html", ".htm"}
INDEX_PAGE = "an index page (keywords linking to other pages), not content; skipped"


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
            if path.is_dir():  # FIFOs, sockets and devices too: each is recorded as failed, never opened blocking
                found.update(p for p in path.rglob("*") if not p.is_dir() and not _hidden(p, path))
            elif path.exists() or path.is_symlink():
                found.add(path)
            else:
                raise FileNotFoundError(f"no such file or folder: {spec}")
    files = sorted(p.resolve() if p.exists() else p.absolute() for p in found)  # a dangling link keeps its name
    return [p for p in files if p.suffix.lower() in SUPPORTED], [p for p in files if p.suffix.lower() not in SUPPORTED]


def _hidden(path: Path, root: Path) -> bool:
    return any(part.startswith(".") for part in path.relative_to(root).parts)


def load_file(path: Path, options: LoadOptions) -> list[SourceDocument]:
    """One file to its documents: one for text and HTML, one per record for JSON, JSONL and CSV."""
    name = display_path(path)
    meta = {"path": name, **options.extra_metadata}
    source = path.as_uri()
    try:
        data, info = _read_regular(path, options.max_bytes)
        meta |= {"mtime": int(info.st_mtime), "bytes": info.st_size}
        text = decode(data)
    except OSError as exc:
        return [SourceDocument(name, source, "", meta, f"cannot read the file: {exc.strerror or exc}")]
    except ValueError as exc:
        return [SourceDocument(name, source, "", meta, str(exc))]
    return parse(text, path.suffix.lower(), name, source, meta, options)


def display_path(path: Path) -> str:
    """The path as text PostgreSQL can store: bytes of a name that are not UTF-8 shown as \\xNN."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def size_text(size: int) -> str:
    """A byte count as a reason shows it: MB from 1 MB up, exact bytes below (a 1,000-byte limit is not "0.0 MB")."""
    return f"{size / 1e6:.1f} MB" if size >= 1_000_000 else f"{size:,} bytes"


def _read_regular(path: Path, max_bytes: int) -> tuple[bytes, os.stat_result]:
    """The bytes of a regular file; ValueError for anything else (a FIFO is opened without waiting for
    a writer, and never read) or a file over the limit."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ValueError(f"not a regular file ({_file_kind(info.st_mode)}); skipped")
        if info.st_size > max_bytes:
            raise ValueError(f"file is {size_text(info.st_size)}, over the {size_text(max_bytes)} limit")
        with os.fdopen(os.dup(fd), "rb") as file:
            data = file.read(max_bytes + 1)
        if len(data) > max_bytes:  # it grew since fstat
            raise ValueError(f"file is over the {size_text(max_bytes)} limit")
        return data, info
    finally:
        os.close(fd)


_KINDS = (
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
)


def _file_kind(mode: int) -> str:
    return next((name for test, name in _KINDS if test(mode)), "a special file")


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
    nul = data.find(b"\x00")  # PostgreSQL text cannot hold NUL either
    if nul >= 0:
        raise ValueError(f"binary file (a NUL byte at offset {nul}), not text")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ValueError(f"not valid UTF-8: byte 0x{data[exc.start]:02x} at offset {exc.start}") from exc


def parse(
    text: str, kind: str, external_id: str, source: str, meta: dict[str, Any], options: LoadOptions
) -> list[SourceDocument]:
    if kind in RECORD_TYPES:
        return list(_records(text, kind, external_id, source, meta, options))
    meta = meta | {"type": kind.lstrip(".")}
    if kind in (".html", ".htm"):
        page = read_html(text)
        if page.index:
            return [SourceDocument(external_id, source, "", meta, INDEX_PAGE)]
        text = page.text
        meta = ({"title": page.title} if page.title else {}) | meta  # a title given in extra metadata wins
    return [SourceDocument(external_id, source, text, meta, None if text.strip() else "empty text")]


def _records(
    text: str, kind: str, external_id: str, source: str, meta: dict[str, Any], options: LoadOptions
) -> Iterator[SourceDocument]:
    """One document per record; ids are unique within the file (one batch cannot write a document
    twice: a record repeating an id, or failing where a good one holds its number, fails alone)."""
    try:
        rows = list(_rows(text, kind))
    except (ValueError, RecursionError, csv.Error) as exc:  # RecursionError: nested past the parser's depth
        reason = str(exc) if isinstance(exc, ValueError | csv.Error) else "nested too deeply"
        yield SourceDocument(external_id, source, "", meta, f"unreadable {kind.lstrip('.')}: {reason}")
        return
    seen: set[str] = set()
    for number, (line, row) in enumerate(rows, start=1):
        doc = _record(row, number, line, external_id, source, meta, options)
        if doc.external_id in seen:
            doc = replace(doc, external_id=f"{external_id}#record-{number}", text="")
            doc = replace(doc, error=doc.error or f"record {number} repeats an id of an earlier record")
        seen.add(doc.external_id)
        yield doc


def _record(
    row: Any, number: int, line: int | None, external_id: str, source: str, meta: dict[str, Any], options: LoadOptions
) -> SourceDocument:
    where = {"record": number} | ({"line": line} if line else {})
    failed = f"{external_id}#{number}"
    if isinstance(row, ValueError):
        return SourceDocument(failed, source, "", meta | where, f"line {line} is not valid JSON: {row}")
    if not isinstance(row, dict):
        return SourceDocument(failed, source, "", meta | where, f"record {number} is not an object")
    problem = unstorable(row)
    if problem:
        return SourceDocument(failed, source, "", meta | where, f"record {number} holds {problem}")
    body = row.get(options.text_field)
    wanted = options.metadata_fields
    fields = {k: v for k, v in row.items() if k != options.text_field and (wanted is None or k in wanted)}
    doc_id = f"{external_id}#{row.get(options.id_field, number)}"
    if not isinstance(body, str) or not body.strip():
        error = f"record {number} has no text in field {options.text_field!r}"
        return SourceDocument(doc_id, source, "", meta | fields | where, error)
    return SourceDocument(doc_id, source, body, meta | fields | where)


def _rows(text: str, kind: str) -> Iterator[tuple[int | None, Any]]:
    """(line, record) pairs; a JSON Lines line that does not parse is its ValueError, naming its own
    line, so that the lines around it still load."""
    if kind == ".csv":
        yield from ((None, row) for row in csv.DictReader(io.StringIO(text)))
    elif kind == ".json":
        data = json.loads(text)
        yield from ((None, row) for row in (data if isinstance(data, list) else [data]))
    else:
        for line, content in enumerate(text.splitlines(), start=1):
            if content.strip():
                try:
                    yield line, json.loads(content)
                except ValueError as exc:
                    yield line, exc
                except RecursionError:  # nested past the parser's depth
                    yield line, ValueError("nested too deeply")
