"""Loading files and stdin into documents: formats, records, and every bad file failing alone with its reason."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from onnxvec.config import PROJECT_ROOT
from onnxvec.sources.files import LoadOptions, expand, load_file, load_stdin
from onnxvec.sources.html import read_html


def test_html_keeps_visible_text_only() -> None:
    markup = "<html><head><title>t</title><style>p{}</style></head><body><h1>Title</h1><p>One &amp; two</p>"
    markup += "<script>alert(1)</script><noscript>x</noscript><div>Three</div></body></html>"
    assert read_html(markup).text == "# Title\nOne & two\nThree"


def test_bad_files_carry_their_reason(tmp_path: Path) -> None:
    (tmp_path / "bin.txt").write_bytes(b"\x89PNG\x00\x00binary")
    (tmp_path / "latin1.txt").write_bytes("café".encode("latin-1"))
    (tmp_path / "empty.md").write_text("  \n")
    (tmp_path / "big.txt").write_text("x" * 2000)
    errors = {p.name: load_file(p, LoadOptions(max_bytes=1000))[0].error for p in sorted(tmp_path.iterdir())}
    assert errors == {
        "big.txt": "file is 2,000 bytes, over the 1,000 bytes limit",
        "bin.txt": "binary file (a NUL byte at offset 4), not text",
        "empty.md": "empty text",
        "latin1.txt": "not valid UTF-8: byte 0xe9 at offset 3",
    }


def test_records_from_jsonl_csv_and_json(tmp_path: Path) -> None:
    (tmp_path / "a.jsonl").write_text('{"id": "x1", "text": "alpha", "lang": "en"}\n\n{"id": "x2", "body": "b"}\n')
    (tmp_path / "b.csv").write_text("id,text,team\n7,hello there,core\n8,,core\n")
    (tmp_path / "c.json").write_text(json.dumps([{"text": "gamma", "n": 1}, "not an object"]))
    docs = [d for p in sorted(tmp_path.iterdir()) for d in load_file(p, LoadOptions(metadata_fields=("lang", "team")))]
    got = [(Path(d.external_id).name, d.text, d.error) for d in docs]
    assert got == [
        ("a.jsonl#x1", "alpha", None),
        ("a.jsonl#x2", "", "record 2 has no text in field 'text'"),
        ("b.csv#7", "hello there", None),
        ("b.csv#8", "", "record 2 has no text in field 'text'"),
        ("c.json#1", "gamma", None),
        ("c.json#2", "", "record 2 is not an object"),
    ]
    assert docs[0].metadata["lang"] == "en" and "id" not in docs[0].metadata
    assert docs[2].metadata["team"] == "core"


def test_an_unreadable_file_is_refused_with_its_reason(tmp_path: Path) -> None:
    """Mode 000 (a PermissionError traceback sank the whole ingest). Root reads such files, so as root
    the loader runs without its DAC capabilities, refused like anyone else."""
    secret = tmp_path / "secret.txt"
    secret.write_text("nobody may read this")
    secret.chmod(0)
    drop = ["setpriv", "--bounding-set=-dac_override,-dac_read_search", "--inh-caps=-dac_override,-dac_read_search"]
    load = f"from onnxvec.sources.files import *; print(load_file(Path({str(secret)!r}), LoadOptions())[0].error)"
    command = [*(drop if os.geteuid() == 0 else []), sys.executable, "-c", f"from pathlib import Path; {load}"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, cwd=PROJECT_ROOT)
    assert done.stdout == "cannot read the file: Permission denied\n", done.stderr


def test_hostile_records_fail_alone_with_their_line(tmp_path: Path) -> None:
    """A broken line, an unpaired surrogate, NaN and NUL (what PostgreSQL cannot store) each fail their
    own record; the error names the real line; the records around them load."""
    lines = [
        '{"id": "a", "text": "first"}',
        "",
        '{"id": "b", "text": broken',
        '{"id": "c", "text": "lone \\ud800 surrogate"}',
        '{"id": "d", "text": "fine", "score": NaN}',
        '{"id": "e", "text": "nul \\u0000 inside"}',
        '{"id": "f", "text": "last"}',
    ]
    (tmp_path / "r.jsonl").write_text("\n".join(lines) + "\n")
    docs = load_file(tmp_path / "r.jsonl", LoadOptions())
    got = [(d.external_id.rsplit("#", 1)[1], d.text, d.error) for d in docs]
    assert got[0] == ("a", "first", None) and got[-1] == ("f", "last", None)
    assert got[1][0] == "2" and got[1][2].startswith("line 3 is not valid JSON: Expecting value")
    assert [g[2] for g in got[2:5]] == [
        "record 3 holds an unpaired surrogate (not valid Unicode)",
        "record 4 holds NaN or Infinity",
        "record 5 holds a NUL character",
    ]
    assert docs[1].metadata["line"] == 3 and docs[4].metadata["line"] == 6
    # ids unique within the file, or the batch's one INSERT ... ON CONFLICT fails as a whole
    (tmp_path / "d.jsonl").write_text('{"id": 2, "text": "a"}\n{"id": 2, "text": "b"}\nbroken\n' + "[" * 100_000 + "\n")
    got = [(d.external_id.rsplit("#", 1)[1], d.error) for d in load_file(tmp_path / "d.jsonl", LoadOptions())]
    assert got == [
        ("2", None),
        ("record-2", "record 2 repeats an id of an earlier record"),
        ("3", "line 3 is not valid JSON: Expecting value: line 1 column 1 (char 0)"),
        ("4", "line 4 is not valid JSON: nested too deeply"),
    ]


def test_expand_recurses_and_reports_unsupported(tmp_path: Path) -> None:
    (tmp_path / "sub" / ".git").mkdir(parents=True)
    for name in ("a.txt", "sub/b.md", "sub/c.html", "sub/d.png", "sub/.git/e.txt"):
        (tmp_path / name).write_text("x")
    supported, unsupported = expand([str(tmp_path)])
    assert [p.name for p in supported] == ["a.txt", "b.md", "c.html"]
    assert [p.name for p in unsupported] == ["d.png"]
    assert [p.name for p in expand([str(tmp_path / "**" / "*.md")])[0]] == ["b.md"]
    with pytest.raises(FileNotFoundError):
        expand([str(tmp_path / "missing")])


def test_stdin_is_one_document_or_records() -> None:
    (doc,) = load_stdin(b"hello from a pipe", ".txt", LoadOptions())
    assert doc.text == "hello from a pipe" and doc.external_id.startswith("stdin:") and doc.error is None
    docs = load_stdin(b'{"id": 1, "text": "a"}\n{"id": 2, "text": "b"}\n', ".jsonl", LoadOptions())
    assert [d.text for d in docs] == ["a", "b"]
