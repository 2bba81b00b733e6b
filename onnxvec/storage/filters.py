"""Metadata filters compiled to SQL over documents.metadata (jsonb containment and SQL/JSON paths),
refusing what cannot mean what it says: hidden keys, unknown operators, values of the wrong type."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from sqlalchemy import Connection, text

from onnxvec.errors import FilterError
from onnxvec.storage.collections import Collection
from onnxvec.values import unstorable

COMPARISONS = {"$eq": "==", "$ne": "!=", "$gt": ">", "$gte": ">=", "$lt": "<", "$lte": "<="}


Scalar = str | int | float | bool | None


def metadata_filter(filter: dict[str, Any], hidden: Iterable[str] = ()) -> tuple[list[str], dict[str, Any]]:
    """SQL conditions on document metadata, all of which must hold.

    ``{"key": value}`` is equality (one jsonb containment test for all of them, which the metadata
    GIN index serves); ``{"key": {"$in": [...]}}``, ``$nin``, ``$ne``, ``$gt``, ``$gte``, ``$lt``,
    ``$lte`` become SQL/JSON path tests, which compare numbers as numbers and strings as strings
    and are false (never an error) when the key is missing or holds another type. A key the collection
    hides (or one under which it hides a path) cannot be filtered on: its values would leak through.
    """
    problem = unstorable(filter)
    if problem:
        raise FilterError(f"the filter holds {problem}")
    for key in filter:
        if any(path == key or path.startswith(key + ".") for path in hidden):
            raise FilterError(f"filter on {key!r}: this collection hides that metadata")
    equal: dict[str, Any] = {}
    clauses: list[str] = []
    params: dict[str, Any] = {}
    for key, condition in filter.items():
        if not isinstance(condition, dict):
            equal[key] = _scalar(key, condition)
            continue
        if not condition:
            raise FilterError(f"filter on {key!r}: give at least one operator")
        for op, value in condition.items():
            n = len(params)
            field = '$."' + key.replace("\\", "\\\\").replace('"', '\\"') + '"'
            if op in ("$in", "$nin"):
                if not isinstance(value, list) or not value:
                    raise FilterError(f"filter on {key!r}: {op} takes a non-empty list")
                test = " || ".join(f"@ == $v{i}" for i in range(len(value)))
                variables = {f"v{i}": _scalar(key, v) for i, v in enumerate(value)}
                negate = op == "$nin"
            elif op in COMPARISONS:
                test, variables, negate = f"@ {COMPARISONS[op]} $v0", {"v0": _scalar(key, value)}, False
                if op == "$ne":  # also true where the key is missing, as $nin
                    test, negate = "@ == $v0", True
            else:
                raise FilterError(
                    f"filter on {key!r}: unknown operator {op!r} (use {', '.join(['$in', '$nin', *COMPARISONS])})"
                )
            test_sql = f"jsonb_path_exists(d.metadata, CAST(:p{n} AS jsonpath), CAST(:p{n}v AS jsonb))"
            clauses.append(("NOT " if negate else "") + test_sql)
            params[f"p{n}"] = f"{field} ? ({test})"
            params[f"p{n}v"] = json.dumps(variables)
    if equal:
        clauses.insert(0, "d.metadata @> CAST(:equal AS jsonb)")
        params["equal"] = json.dumps(equal)
    return clauses, params


RANGES = {"$gt", "$gte", "$lt", "$lte"}


JSON_TYPES = {str: "string", bool: "boolean", int: "number", float: "number"}


def check_range_types(conn: Connection, collection: Collection, filter: dict[str, Any]) -> None:
    """A range test against a value of another type than the collection stores under that key (a
    string against numbers) matches nothing: a mistake to report, not an empty result to return."""
    for key, condition in filter.items():
        if not isinstance(condition, dict):
            continue
        for op, value in condition.items():
            if op not in RANGES or type(value) not in JSON_TYPES:
                continue
            stored = set(
                conn.execute(
                    text(
                        "SELECT DISTINCT t FROM (SELECT jsonb_typeof(metadata -> :key) AS t FROM documents"
                        " WHERE collection_id = :c AND metadata ? :key LIMIT 100) sample"
                    ),
                    {"key": key, "c": collection.id},
                ).scalars()
            )
            if stored and JSON_TYPES[type(value)] not in stored:
                raise FilterError(
                    f"filter on {key!r}: {op} compares with a {JSON_TYPES[type(value)]}, but {collection.name} "
                    f"stores {' and '.join(sorted(stored))} values under {key!r}"
                )


def _scalar(key: str, value: Any) -> Scalar:
    if value is not None and not isinstance(value, str | int | float | bool):
        raise FilterError(f"filter on {key!r}: compare with a string, number, boolean or null, not {value!r}")
    return value
