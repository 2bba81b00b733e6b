"""What text and JSON values PostgreSQL, the tokenizers and the filesystem can take: client input
(request bodies, records, file and model names) is checked here, so that it is refused with its
reason instead of failing deep inside a driver."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any


def invalid_unicode(text: str) -> bool:
    """An unpaired surrogate (JSON's "\\ud800", or a file name that is not UTF-8): no encoder takes it."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def unstorable(value: Any) -> str | None:
    """What in a value PostgreSQL's text and jsonb cannot hold (a NUL character, an unpaired surrogate,
    NaN or Infinity), or None. Walked without recursion: JSON can nest deeper than Python's stack."""
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return "a NUL character"
            if invalid_unicode(item):
                return "an unpaired surrogate (not valid Unicode)"
        elif isinstance(item, float) and not math.isfinite(item):
            return "NaN or Infinity"
        elif isinstance(item, dict):
            pending += [part for pair in item.items() for part in pair]
        elif isinstance(item, list | tuple):
            pending += item
    return None


def without_paths(metadata: dict[str, Any], paths: Iterable[str]) -> dict[str, Any]:
    """`metadata` less the dotted `paths` ("owner.email" removes metadata["owner"]["email"]); the
    input is not changed. A path that is not there removes nothing."""
    result = dict(metadata)
    for path in paths:
        *parents, last = path.split(".")
        node = result
        for key in parents:
            child = node.get(key)
            if not isinstance(child, dict):
                break
            node[key] = node = dict(child)  # copied on the way down, so the caller's dicts stay whole
        else:
            node.pop(last, None)
    return result
