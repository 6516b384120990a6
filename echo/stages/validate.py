"""Record validation (CONTRACT.md section 1.2): pure Python, one record at a time.

Runs inside Spark tasks while the input is read. A record is refused with the *first*
reason that applies, in the contract's order::

    invalid_json, missing_field, wrong_type, unknown_event_type, negative_value, text_too_large

The fields checked are the common ones plus, when ``event_type`` is one of the four,
that type's own; a JSON ``null`` counts as absent; other keys are ignored.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from typing import Any

from echo.contract import (  # the contract's names; re-exported for the stages
    COMMON_OPTIONAL,
    COMMON_REQUIRED,
    CONFLICTING_DUPLICATE,
    EVENT_COLUMNS,
    INT64_MAX,
    INT64_MIN,
    INVALID_JSON,
    MISSING_FIELD,
    NEGATIVE_VALUE,
    NON_NEGATIVE,
    REASONS,
    TEXT_FIELDS,
    TEXT_TOO_LARGE,
    TYPE_FIELDS,
    UNKNOWN_EVENT_TYPE,
    WRONG_TYPE,
)

__all__ = [
    "COMMON_OPTIONAL", "COMMON_REQUIRED", "CONFLICTING_DUPLICATE", "EVENT_COLUMNS", "INT64_MAX",
    "INT64_MIN", "INVALID_JSON", "MISSING_FIELD", "NEGATIVE_VALUE", "NON_NEGATIVE", "REASONS",
    "TEXT_FIELDS", "TEXT_TOO_LARGE", "TYPE_FIELDS", "UNKNOWN_EVENT_TYPE", "WRONG_TYPE", "Verdict",
]  # fmt: skip


@dataclass(frozen=True)
class Verdict:
    """The outcome of validating one record."""

    reason: str | None  # None: a valid event
    detail: str | None  # the field concerned, for operators
    event: dict[str, Any] | None  # the event's columns (valid records only)
    content_hash: str  # identity of the record: canonical JSON, or raw bytes if unparseable
    event_id: str | None  # when the record has a string event_id
    user_id: str | None = None  # when the record has a string user_id (also if refused)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def canonical_json(obj: Any) -> str:
    """The same JSON value always gives the same text (key order, white space)."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def parse_json_record(raw: bytes) -> tuple[dict[str, Any] | None, str]:
    """Parse one JSON Lines record. Returns (object or None if invalid_json, identity hash)."""
    try:
        obj = json.loads(raw.decode("utf-8"), parse_constant=_reject_constant)
    except (UnicodeDecodeError, ValueError, RecursionError):
        return None, sha256_hex(raw)
    if not isinstance(obj, dict):
        return None, sha256_hex(raw)
    try:
        canon = canonical_json(obj).encode("utf-8")  # lone surrogates are not UTF-8
    except (UnicodeEncodeError, ValueError):
        return None, sha256_hex(raw)
    return obj, sha256_hex(canon)


def _kind_ok(value: Any, kind: str) -> bool:
    if kind == "s":
        return isinstance(value, str)
    if isinstance(value, bool) or not isinstance(value, int):
        return False
    return INT64_MIN <= value <= INT64_MAX


def validate_object(obj: dict[str, Any], content_hash: str, *, max_text_bytes: int = 1_048_576) -> Verdict:
    """Validate a parsed record (a JSON object or a Parquet row as a dict)."""
    event_id = obj.get("event_id") if isinstance(obj.get("event_id"), str) else None
    user_id = obj.get("user_id") if isinstance(obj.get("user_id"), str) else None
    etype = obj.get("event_type")
    required = dict(COMMON_REQUIRED)
    optional = dict(COMMON_OPTIONAL)
    known_type = isinstance(etype, str) and etype in TYPE_FIELDS
    if known_type:
        req, opt = TYPE_FIELDS[str(etype)]
        required.update(req)
        optional.update(opt)

    def refuse(reason: str, detail: str | None) -> Verdict:
        return Verdict(reason, detail, None, content_hash, event_id, user_id)

    for name in required:
        if obj.get(name) is None:
            return refuse(MISSING_FIELD, name)
    for name, kind in {**required, **optional}.items():
        value = obj.get(name)
        if value is not None and not _kind_ok(value, kind):
            return refuse(WRONG_TYPE, name)
    if not known_type:
        return refuse(UNKNOWN_EVENT_TYPE, "event_type")
    for name in NON_NEGATIVE:
        value = obj.get(name)
        if name in required and value is not None and value < 0:
            return refuse(NEGATIVE_VALUE, name)
    for name in TEXT_FIELDS:
        value = obj.get(name)
        if (
            (name in required or name in optional)
            and isinstance(value, str)
            # n code points take at most 4n bytes: skip encoding short texts
            and len(value) > max_text_bytes // 4
            and len(value.encode("utf-8")) > max_text_bytes
        ):
            return refuse(TEXT_TOO_LARGE, name)
    checked = {**required, **optional}
    event = {c: (obj.get(c) if c in checked else None) for c in EVENT_COLUMNS}
    return Verdict(None, None, event, content_hash, event_id, user_id)


def validate_json_line(raw: bytes, *, max_text_bytes: int = 1_048_576) -> Verdict:
    obj, content_hash = parse_json_record(raw)
    if obj is None:
        return Verdict(INVALID_JSON, None, None, content_hash, None)
    return validate_object(obj, content_hash, max_text_bytes=max_text_bytes)


def parquet_row_identity(row: dict[str, Any]) -> tuple[dict[str, Any] | None, str, str]:
    """A Parquet row as a JSON-like object: (object, identity hash, raw text).

    Values JSON cannot hold (NaN, bytes, timestamps) make the row invalid_json's Parquet
    equivalent only if they sit in a checked field; elsewhere they are shown as text.
    """
    clean = {k: v for k, v in row.items()}
    raw = json.dumps(clean, sort_keys=True, ensure_ascii=False, default=str)
    try:
        canon = canonical_json(
            {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in clean.items()}
        )
        return clean, sha256_hex(canon.encode("utf-8")), raw
    except (TypeError, ValueError, UnicodeEncodeError):
        return clean, sha256_hex(raw.encode("utf-8", "surrogatepass")), raw
