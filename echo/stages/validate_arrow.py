"""Vectorized validation of JSON Lines records (CONTRACT.md 1.2), for the common case.

:mod:`echo.stages.validate` is the reference: one record at a time, in Python. This
module decides the same thing for a whole batch of lines at once with Arrow (the
``pyarrow.json`` reader and ``pyarrow.compute`` kernels), but only for the lines where
that is provably the same decision; every other line is handed back to the reference
validator. A line is *handled* here only when all of these hold:

- it is valid UTF-8, starts with ``{`` and ends with ``}`` (no white space around), and
  holds no carriage return (the Arrow reader would split the line there);
- it holds no member with a ``null`` value (``null`` counts as absent for validation but
  not for the record's identity, and the Arrow reader cannot tell the two apart), no
  ``\\u00XX`` escape below ``\\u0020`` and no surrogate escape (control characters and
  lone surrogates go to the reference);
- no known field obviously holds the wrong kind of value (a cheap regular expression:
  lines that look suspicious go to the reference, so that the strict reader below rarely
  fails on a whole block);
- the strict Arrow reader, with an explicit schema of the 19 event fields as ``int64`` or
  ``string`` and unknown fields refused, parses the line: it is then a JSON object whose
  keys are all known event fields, none twice (duplicate keys are refused), every value
  of its field's kind, integers within int64, no ``NaN``/``Infinity`` (refused), no
  trailing data, no lone surrogate.

For such a line the reference's checks reduce to: ``missing_field``, then
``unknown_event_type``, ``negative_value`` and ``text_too_large`` (``invalid_json`` and
``wrong_type`` cannot apply), each in the reference's field order; and the record's
canonical JSON (sorted keys, compact, ``ensure_ascii=False``) can be rebuilt from the
parsed values. A block the Arrow reader refuses is split in halves until the refused
lines are isolated, and those go to the reference. ``tests/test_validate_arrow.py``
checks with hypothesis that both paths give the same rows for hostile input.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from echo.stages.validate import (
    COMMON_OPTIONAL,
    COMMON_REQUIRED,
    EVENT_COLUMNS,
    MISSING_FIELD,
    NEGATIVE_VALUE,
    NON_NEGATIVE,
    TEXT_FIELDS,
    TEXT_TOO_LARGE,
    TYPE_FIELDS,
    UNKNOWN_EVENT_TYPE,
)

#: the kind of every known field ("s" string, "i" int64); kinds agree across types
KINDS: dict[str, str] = {**COMMON_REQUIRED, **COMMON_OPTIONAL}
for _req, _opt in TYPE_FIELDS.values():
    KINDS.update(_req)
    KINDS.update(_opt)
INT_FIELDS = tuple(k for k in EVENT_COLUMNS if KINDS[k] == "i")
STR_FIELDS = tuple(k for k in EVENT_COLUMNS if KINDS[k] == "s")

_ARROW_SCHEMA = pa.schema(
    [pa.field(k, pa.int64() if KINDS[k] == "i" else pa.string()) for k in EVENT_COLUMNS]
)

_WS = "[ \\t]*"
#: a line matching this goes to the reference validator (false positives only cost speed)
_SUSPICIOUS = "|".join(
    [
        # a null member (also matches ": null" inside a text: harmless)
        ":" + _WS + "null" + _WS + "[,}]",
        # an escaped control character or surrogate (identity needs the reference)
        r"\\u00[01]",
        r"\\u[dD][89a-fA-F]",
        # an int field holding something else than a plain integer of at most 18 digits
        '"(?:'
        + "|".join(INT_FIELDS)
        + ')"'
        + _WS
        + ":"
        + _WS
        + "(?:[^-0-9 \\t]|-?[0-9]{19}|-?[0-9]+[.eE])",
        # a string field holding something else than a string
        '"(?:' + "|".join(STR_FIELDS) + ')"' + _WS + ":" + _WS + '[^" \\t]',
    ]
)
_MIN_BISECT = 8  # a refused block of at most this many lines goes to the reference whole


def _mask(arr: Any) -> np.ndarray:
    """A boolean Arrow array (nulls as False) as numpy."""
    return np.asarray(pc.fill_null(arr, False).to_numpy(zero_copy_only=False), dtype=bool)


def _utf8(lines: pa.BinaryArray) -> tuple[pa.StringArray, np.ndarray]:
    """The lines as strings, and which of them are valid UTF-8 (the others are empty)."""
    try:
        return lines.cast(pa.string()), np.ones(len(lines), dtype=bool)
    except (pa.ArrowInvalid, UnicodeDecodeError):
        ok = []
        for b in lines.to_pylist():
            try:
                b.decode("utf-8")
                ok.append(True)
            except UnicodeDecodeError:
                ok.append(False)
        mask = np.array(ok, dtype=bool)
        cleaned = pc.if_else(pa.array(mask), lines, pa.scalar(b"", pa.binary()))
        return cleaned.cast(pa.string()), mask


def _newline_joined(text: pa.StringArray) -> pa.Buffer:
    """The lines, each followed by a newline, as one buffer (no Python objects per line)."""
    joined = pc.binary_join_element_wise(text.cast(pa.binary()), b"\n", b"")
    offsets = np.frombuffer(
        joined.buffers()[1], dtype=np.int32, count=len(joined) + 1, offset=joined.offset * 4
    )
    return joined.buffers()[2][int(offsets[0]) : int(offsets[-1])]


def _parse(text: pa.StringArray) -> pa.Table | None:
    """The strict Arrow reader over lines joined by newlines; None when it refuses them
    or does not give one row per line."""
    import pyarrow.json as pj

    if len(text) == 0:
        return None
    joined = _newline_joined(text)
    try:
        table = pj.read_json(
            pa.BufferReader(joined),
            read_options=pj.ReadOptions(use_threads=False, block_size=joined.size + 1),
            parse_options=pj.ParseOptions(
                explicit_schema=_ARROW_SCHEMA,
                unexpected_field_behavior="error",
                newlines_in_values=False,
            ),
        )
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
        return None
    if table.num_rows != len(text):
        return None
    return table.select(list(EVENT_COLUMNS)).combine_chunks()


def _parse_bisect(text: pa.StringArray, idx: np.ndarray) -> list[tuple[np.ndarray, pa.Table]]:
    """Parse ``text[idx]``; a refused block is split until the refused lines are alone
    (they are left out: the caller sends them to the reference)."""
    out: list[tuple[np.ndarray, pa.Table]] = []
    stack = [idx]
    while stack:
        part = stack.pop()
        if len(part) == 0:
            continue
        table = _parse(text.take(pa.array(part)))
        if table is not None:
            out.append((part, table))
        elif len(part) > _MIN_BISECT:
            half = len(part) // 2
            stack.append(part[half:])
            stack.append(part[:half])
    return out


_ESCAPES = (
    ("\\", "\\\\"),
    ('"', '\\"'),
    ("\n", "\\n"),
    ("\r", "\\r"),
    ("\t", "\\t"),
    ("\b", "\\b"),
    ("\f", "\\f"),
)


def _json_string(col: pa.Array) -> pa.Array:
    """Strings as Python's ``json.dumps(ensure_ascii=False)`` writes them (no control
    characters other than these five reach here). Only the characters present in the
    column are replaced (one pass over its bytes tells which)."""
    col = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    data = col.buffers()[2]
    present = (
        np.bincount(np.frombuffer(data, dtype=np.uint8), minlength=256)
        if data is not None
        else np.zeros(256)
    )
    s = col
    for ch, esc in _ESCAPES:  # the backslash first: the others add backslashes
        if present[ord(ch)]:
            s = pc.replace_substring(s, ch, esc)
    return pc.binary_join_element_wise('"', s, '"', "")


def _content_hashes(table: pa.Table) -> list[str]:
    """sha256 of each row's canonical JSON (sorted keys; absent fields left out)."""
    pieces = []
    for name in sorted(EVENT_COLUMNS):
        col = table.column(name)
        value = pc.cast(col, pa.string()) if KINDS[name] == "i" else _json_string(col)
        # absent: "" (null_handling="skip" loses rows when every input is null)
        pieces.append(pc.fill_null(pc.binary_join_element_wise(f'"{name}":', value, ",", ""), ""))
    body = pc.utf8_slice_codeunits(
        pc.binary_join_element_wise(*pieces, ""), 0, -1
    )  # the last comma
    canon = pc.binary_join_element_wise("{", body, "}", "").cast(pa.binary())
    return [hashlib.sha256(b).hexdigest() for b in canon.to_pylist()]


def _verdicts(table: pa.Table, max_text_bytes: int) -> dict[str, pa.Array]:
    """The reference's decision for parsed lines (see the module docstring)."""
    n = table.num_rows
    present = {
        k: ~np.asarray(table.column(k).is_null().to_numpy(zero_copy_only=False), dtype=bool)
        for k in EVENT_COLUMNS
    }
    etype = table.column("event_type")
    is_type = {t: _mask(pc.equal(etype, t)) for t in TYPE_FIELDS}
    known = np.zeros(n, dtype=bool)
    for m in is_type.values():
        known |= m
    required = {k: np.ones(n, dtype=bool) for k in COMMON_REQUIRED}
    checked = {k: np.ones(n, dtype=bool) for k in {**COMMON_REQUIRED, **COMMON_OPTIONAL}}
    for t, (req, opt) in TYPE_FIELDS.items():
        for k in req:
            required[k] = required.get(k, np.zeros(n, dtype=bool)) | is_type[t]
        for k in {**req, **opt}:
            checked[k] = checked.get(k, np.zeros(n, dtype=bool)) | is_type[t]

    reason = np.full(n, None, dtype=object)
    detail = np.full(n, None, dtype=object)
    open_ = np.ones(n, dtype=bool)

    def refuse(mask: np.ndarray, why: str, field: str) -> None:
        hit = mask & open_
        reason[hit] = why
        detail[hit] = field
        open_[hit] = False

    # missing_field: the common fields, then the type's own, each in the reference's order
    for k in COMMON_REQUIRED:
        refuse(~present[k], MISSING_FIELD, k)
    for t, (req, _opt) in TYPE_FIELDS.items():
        for k in req:
            refuse(is_type[t] & ~present[k], MISSING_FIELD, k)
    # wrong_type cannot apply: every known field parsed with its kind
    refuse(~known, UNKNOWN_EVENT_TYPE, "event_type")
    for k in NON_NEGATIVE:
        if k in required:
            neg = _mask(pc.less(table.column(k), 0))
            refuse(required[k] & neg, NEGATIVE_VALUE, k)
    for k in TEXT_FIELDS:
        if k in checked:
            big = _mask(pc.greater(pc.binary_length(table.column(k)), max_text_bytes))
            refuse(checked[k] & big, TEXT_TOO_LARGE, k)

    valid = pa.array(open_)
    cols: dict[str, pa.Array] = {
        "q_reason": pa.array(reason, pa.string()),
        "q_detail": pa.array(detail, pa.string()),
        "record_event_id": table.column("event_id").combine_chunks(),
        "content_hash": pa.array(_content_hashes(table), pa.string()),
    }
    for k in EVENT_COLUMNS:
        col = table.column(k).combine_chunks()
        keep = (
            valid if k != "user_id" else pa.array(np.ones(n, dtype=bool))
        )  # refused: user_id only
        keep = pc.and_(keep, pa.array(checked.get(k, np.zeros(n, dtype=bool))))
        cols[k] = pc.if_else(keep, col, pa.nulls(n, col.type))
    return cols


def validate_lines(
    lines: pa.BinaryArray, *, max_text_bytes: int
) -> tuple[np.ndarray, dict[str, pa.Array]]:
    """Validate non-blank lines (no newline, trailing carriage returns removed).

    Returns ``(handled, columns)``: the indices of the lines decided here, in increasing
    order, and for those lines the columns ``q_reason``, ``q_detail``,
    ``record_event_id``, ``content_hash`` and every event column, as the reference
    validator would fill them. Every other line must go to the reference."""
    n = len(lines)
    text, utf8 = _utf8(lines)
    candidate = (
        utf8
        & _mask(pc.starts_with(text, "{"))
        & _mask(pc.ends_with(text, "}"))
        & ~_mask(pc.match_substring(text, "\r"))
        & ~_mask(pc.match_substring_regex(text, _SUSPICIOUS))
    )
    parts = _parse_bisect(text, np.flatnonzero(candidate))
    if not parts:
        return np.zeros(0, dtype=np.int64), {}
    parts.sort(key=lambda p: int(p[0][0]))
    idx = np.concatenate([p[0] for p in parts])
    table = pa.concat_tables([p[1] for p in parts]).combine_chunks()
    order = np.argsort(idx, kind="stable")
    idx = idx[order]
    table = table.take(pa.array(order))
    assert n >= len(idx)
    return idx, _verdicts(table, max_text_bytes)
