"""What text and JSON values PostgreSQL, the tokenizers and the filesystem can take: client input
(request bodies, records, file and model names) is checked here, so that it is refused with its
reason instead of failing deep inside a driver."""

from __future__ import annotations

import math
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
    NaN or Infinity), or None."""
    if isinstance(value, str):
        if "\x00" in value:
            return "a NUL character"
        return "an unpaired surrogate (not valid Unicode)" if invalid_unicode(value) else None
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN or Infinity"
    if isinstance(value, dict):
        return next(filter(None, (unstorable(part) for item in value.items() for part in item)), None)
    if isinstance(value, list | tuple):
        return next(filter(None, map(unstorable, value)), None)
    return None
