"""Malformed records of every kind the contract quarantines (CONTRACT.md 1.2).

Each maker takes a clean event and returns a record that fails validation with exactly
that reason (the first reason that applies is the intended one). Records are bytes for
JSON Lines and dicts for Parquet (where invalid JSON and wrong types cannot occur).
"""

from __future__ import annotations

import json
import random
from typing import Any

COMMON_REQUIRED = ("event_id", "event_type", "ts_ms", "user_id", "doc_id", "doc_version")
TYPE_REQUIRED: dict[str, tuple[str, ...]] = {
    "shown": ("suggestion_id", "model_id", "offset", "text", "prefix"),
    "accepted": ("suggestion_id", "offset", "accepted_text"),
    "rejected": ("suggestion_id",),
    "edit": ("offset", "delete_len", "insert_text"),
}
INT_FIELDS = frozenset({"ts_ms", "doc_version", "offset", "delete_len", "latency_ms"})
TEXT_FIELDS = {"shown": "text", "accepted": "accepted_text", "edit": "insert_text"}
MAX_TEXT_BYTES = 1_048_576


_ENCODER = json.JSONEncoder(ensure_ascii=False)


def encode(record: Any) -> bytes:
    return _ENCODER.encode(record).encode("utf-8")


def fresh_id(rng: random.Random) -> str:
    return f"{rng.getrandbits(128):032x}"


def invalid_json(ev: dict[str, Any], rng: random.Random) -> bytes:
    rec = dict(ev, event_id=fresh_id(rng))
    line = encode(rec)
    kind = rng.randrange(4)
    if kind == 0:  # cut short: a proper prefix of an object is never valid JSON
        return line[: rng.randrange(10, len(line) - 1)]
    if kind == 1:  # bytes that are not UTF-8 inside a string
        i = line.index(b'"event_id": "') + len(b'"event_id": "')
        return line[:i] + b"\xff\xfe" + line[i:]
    if kind == 2:  # NaN is not JSON
        rec["ts_ms"] = float("nan")
        return json.dumps(rec, ensure_ascii=False).encode("utf-8")
    return rng.choice([b"[1, 2, 3]", b'"shown"', b"42", b"null", encode([rec])])


def missing_field(ev: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    rec = dict(ev, event_id=fresh_id(rng))
    names = COMMON_REQUIRED + TYPE_REQUIRED[ev["event_type"]]
    name = names[rng.randrange(len(names))]
    if name == "event_type":
        name = "user_id"
    if rng.random() < 0.5:
        rec.pop(name, None)
    else:
        rec[name] = None
    return rec


def wrong_type(ev: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    rec = dict(ev, event_id=fresh_id(rng))
    names = [
        n
        for n in COMMON_REQUIRED + TYPE_REQUIRED[ev["event_type"]]
        if n not in ("event_id", "event_type")
    ]
    name = names[rng.randrange(len(names))]
    value = rec[name]
    if name in INT_FIELDS:
        rec[name] = rng.choice([str(value), [value], {"v": value}])
    else:
        rec[name] = rng.choice([12345, [value], {"v": value}])
    return rec


def unknown_event_type(ev: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    return dict(
        ev,
        event_id=fresh_id(rng),
        event_type=rng.choice(["hover", "Shown", "accept", "closed", ""]),
    )


def negative_value(ev: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    rec = dict(ev, event_id=fresh_id(rng))
    names = ["doc_version"] + [n for n in ("offset", "delete_len") if n in rec]
    rec[names[rng.randrange(len(names))]] = -rng.randint(1, 100)
    return rec


def text_too_large(ev: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    rec = dict(ev, event_id=fresh_id(rng))
    name = TEXT_FIELDS.get(ev["event_type"], "")
    if not name:  # a rejected has no text of its own: make it a shown-like edit
        rec.update(event_type="edit", offset=0, delete_len=0)
        rec.pop("suggestion_id", None)
        rec.pop("reason", None)
        name = "insert_text"
    if rng.random() < 0.5:
        rec[name] = "x" * (MAX_TEXT_BYTES + 1 + rng.randrange(100))
    else:  # few code points, many bytes: 2 bytes each
        rec[name] = "é" * (MAX_TEXT_BYTES // 2 + 1 + rng.randrange(100))
    return rec


def conflicting_duplicate(ev: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    rec = dict(ev)
    if rng.random() < 0.5:
        rec["ts_ms"] = ev["ts_ms"] + rng.randint(1, 5000)
    else:
        rec["client"] = str(ev.get("client", "")) + " (retry)"
    return rec


MAKERS = {
    "missing_field": missing_field,
    "wrong_type": wrong_type,
    "unknown_event_type": unknown_event_type,
    "negative_value": negative_value,
    "text_too_large": text_too_large,
    "conflicting_duplicate": conflicting_duplicate,
}
