"""The vectorized validator agrees with the reference on every line it decides, and the
vectorized read path gives exactly the rows of the reference read path (CONTRACT.md 1.2).

The reference is :func:`echo.stages.validate.validate_json_line` (one record at a time);
:func:`echo.stages.validate_arrow.validate_lines` decides the lines it can prove it
decides the same way and hands back the others. Hypothesis generates hostile records
(every quarantine reason, nulls, duplicate keys, unknown keys, escapes, surrogates,
NaN, big integers, booleans, floats, invalid UTF-8, white space, other JSON writers).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from echo.sources import (
    _arrow_records_schema,
    _batches,
    _iter_lines,
    _lines_at,
    list_inputs,
    plan_tasks,
    read_task,
    read_task_batches,
)
from echo.stages.validate import EVENT_COLUMNS, validate_json_line
from echo.stages.validate_arrow import KINDS, validate_lines

MAX = 64  # a small text limit, so that text_too_large is reachable

TEXT = st.text(
    alphabet=st.one_of(
        st.sampled_from(list('ab "\\\n\r\t\b\f\x00\x1f\x7f/é€😀\u2028')),
        st.characters(codec="utf-8"),
    ),
    max_size=40,
)
ODD_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([2**63 - 1, 2**63, -(2**63), -(2**63) - 1, 0, -1, 10**18, 10**19]),
    TEXT,
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.sampled_from(["v", "event_id"]), st.integers(), max_size=2),
)


def _value(name: str) -> st.SearchStrategy[Any]:
    if name == "event_type":
        good: st.SearchStrategy[Any] = st.sampled_from(
            ["shown", "accepted", "rejected", "edit", "other", ""]
        )
    elif KINDS[name] == "i":
        good = st.integers(min_value=-5, max_value=2**40)
    else:
        good = TEXT
    return st.one_of(good, good, good, ODD_VALUES)


@st.composite
def records(draw: st.DrawFn) -> dict[str, Any]:
    names = draw(
        st.lists(
            st.sampled_from(EVENT_COLUMNS), unique=True, min_size=0, max_size=len(EVENT_COLUMNS)
        )
    )
    if draw(st.booleans()):  # usually most of the fields
        names = list(EVENT_COLUMNS)[: draw(st.integers(min_value=4, max_value=len(EVENT_COLUMNS)))]
    rec = {n: draw(_value(n)) for n in names}
    if draw(st.integers(min_value=0, max_value=9)) == 0:
        rec[draw(st.sampled_from(["extra", "Event_id", "event_id "]))] = draw(ODD_VALUES)
    return rec


def _serialize(rec: dict[str, Any], style: int) -> bytes:
    if style == 0:
        return json.dumps(rec, ensure_ascii=False).encode("utf-8", "surrogatepass")
    if style == 1:
        return json.dumps(rec, ensure_ascii=True).encode()
    if style == 2:
        return json.dumps(rec, separators=(",", ":"), sort_keys=True, ensure_ascii=False).encode(
            "utf-8", "surrogatepass"
        )
    return json.dumps(rec, indent=None, separators=(" ,", " : "), ensure_ascii=False).encode(
        "utf-8", "surrogatepass"
    )


MUTATIONS = [
    lambda b: b,
    lambda b: b,
    lambda b: b,
    lambda b: b[: len(b) // 2],  # truncated
    lambda b: b" " + b,  # leading white space
    lambda b: b + b" ",
    lambda b: b"\xef\xbb\xbf" + b,  # BOM
    lambda b: b.replace(b",", b",\r", 1),
    lambda b: b.replace(b'"event_id"', b'"event_id": "dup", "event_id"', 1),  # duplicate key
    lambda b: b.replace(b'"d', b'"d\xff', 1),  # invalid UTF-8
    lambda b: b.replace(b'"ts_ms": ', b'"ts_ms": NaN, "x": ', 1),
    lambda b: b.replace(b"}", b"} {}", 1) if b.endswith(b"}") else b,
    lambda b: b.replace(b'"event_type"', b'"event\\u005ftype"', 1),  # an escaped key
    lambda b: b.replace(b'"user_id": "', b'"user_id": "\\ud800', 1),  # lone surrogate
    lambda b: b.replace(b'"', b"'", 2),
]


@st.composite
def lines(draw: st.DrawFn) -> bytes:
    line = _serialize(draw(records()), draw(st.integers(min_value=0, max_value=3)))
    line = draw(st.sampled_from(MUTATIONS))(line)
    return line.replace(b"\n", b"\\n")  # one record per line (surrogatepass kept raw newlines out)


def _reference_columns(line: bytes) -> dict[str, Any]:
    v = validate_json_line(line, max_text_bytes=MAX)
    ev = v.event or {"user_id": v.user_id}
    return {
        "q_reason": v.reason,
        "q_detail": v.detail,
        "record_event_id": v.event_id,
        "content_hash": v.content_hash,
        **{c: ev.get(c) for c in EVENT_COLUMNS},
    }


def _non_blank(batch: list[bytes]) -> list[bytes]:
    return [b.rstrip(b"\r") for b in batch if b.rstrip(b"\r").strip()]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(lines(), min_size=1, max_size=12))
def test_every_line_the_vectorized_validator_decides_matches_the_reference(batch):
    batch = _non_blank(batch)
    if not batch:
        return
    handled, cols = validate_lines(pa.array(batch, pa.binary()), max_text_bytes=MAX)
    for j, i in enumerate(handled.tolist()):
        fast = {name: col[j].as_py() for name, col in cols.items()}
        assert fast == _reference_columns(batch[i]), batch[i]


def test_plain_records_of_every_kind_are_decided_by_the_vectorized_path():
    common = {
        "event_id": "e",
        "ts_ms": 5,
        "user_id": "u",
        "doc_id": "d",
        "doc_version": 2,
        "language": "py",
    }
    recs = [
        {**common, "event_type": "shown", "suggestion_id": "s", "model_id": "m", "offset": 1, "text": 'a"b\\c\n',
         "prefix": "p\té", "suffix": "😀", "latency_ms": 3},
        {**common, "event_type": "accepted", "suggestion_id": "s", "offset": 1, "accepted_text": "x"},
        {**common, "event_type": "rejected", "suggestion_id": "s", "reason": "escape"},
        {**common, "event_type": "edit", "offset": 0, "delete_len": 1, "insert_text": ""},
        {**common, "event_type": "edit", "offset": -1, "delete_len": 1, "insert_text": ""},  # negative_value
        {**common, "event_type": "edit", "offset": 0, "delete_len": 1},  # missing_field
        {**common, "event_type": "moved"},  # unknown_event_type
        {**common, "event_type": "accepted", "suggestion_id": "s", "offset": 1, "accepted_text": "x" * (MAX + 1)},
    ]  # fmt: skip
    raw = [json.dumps(r, ensure_ascii=False).encode() for r in recs]
    handled, cols = validate_lines(pa.array(raw, pa.binary()), max_text_bytes=MAX)
    assert handled.tolist() == list(range(len(raw)))
    assert cols["q_reason"].to_pylist() == [
        None, None, None, None, "negative_value", "missing_field", "unknown_event_type", "text_too_large",
    ]  # fmt: skip
    assert cols["content_hash"].to_pylist() == [validate_json_line(r).content_hash for r in raw]


def _rows(table: pa.Table) -> list[dict[str, Any]]:
    return sorted(table.to_pylist(), key=lambda r: (r["path_idx"], r["pos"]))


def _read_both(path: Path, split_bytes: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    schema = _arrow_records_schema()
    tasks = plan_tasks(list_inputs([str(path)]), split_bytes=split_bytes)
    fast = [b for t in tasks for b in read_task_batches(t, MAX, schema)]
    ref = [b for t in tasks for b in _batches(read_task(t, MAX), schema)]
    return _rows(pa.Table.from_batches(fast, schema)), _rows(pa.Table.from_batches(ref, schema))


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    batch=st.lists(
        st.one_of(lines(), st.sampled_from([b"", b"  ", b"\r", b"\t\r"])), min_size=1, max_size=30
    ),
    crlf=st.booleans(),
    split=st.integers(min_value=50, max_value=2000),
)
def test_vectorized_read_path_gives_the_reference_rows(tmp_path_factory, batch, crlf, split):
    path = tmp_path_factory.mktemp("in") / "events.jsonl"
    path.write_bytes(b"".join(line + (b"\r\n" if crlf else b"\n") for line in batch))
    fast, ref = _read_both(path, split)
    assert fast == ref


@pytest.mark.parametrize("name", ["events.jsonl", "events.jsonl.gz"])
def test_vectorized_read_path_reads_a_file_in_several_chunks(tmp_path, monkeypatch, name):
    import gzip

    import echo.sources as sources

    monkeypatch.setattr(sources, "CHUNK_BYTES", 300)
    rec = {"event_id": "e", "event_type": "edit", "ts_ms": 1, "user_id": "u", "doc_id": "d", "doc_version": 1,
           "offset": 0, "delete_len": 0, "insert_text": "abc"}  # fmt: skip
    body = (
        b"".join(json.dumps({**rec, "event_id": f"e{i}"}).encode() + b"\n" for i in range(50))
        + b'{"no newline"'
    )
    path = tmp_path / name
    path.write_bytes(gzip.compress(body) if name.endswith(".gz") else body)
    fast, ref = _read_both(path, 1 << 30)
    assert len(fast) == 51
    assert fast == ref


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    batch=st.lists(st.one_of(lines(), st.sampled_from([b"", b" \r", b"\r\r"])), min_size=1, max_size=20),
    crlf=st.booleans(),
    last_newline=st.booleans(),
    gz=st.booleans(),
)
def test_a_line_read_again_by_its_position_is_the_line_read(tmp_path_factory, batch, crlf, last_newline, gz):
    """Ingest keeps the raw bytes of refused records only and reads a line again when a
    valid record is quarantined later: by its (path_idx, pos), the same bytes."""
    import gzip

    end = b"\r\n" if crlf else b"\n"
    body = end.join(batch) + (end if last_newline else b"")
    name = "events.jsonl.gz" if gz else "events.jsonl"
    path = tmp_path_factory.mktemp("again") / name
    path.write_bytes(gzip.compress(body) if gz else body)
    (f,) = list_inputs([str(path)])
    (task,) = plan_tasks([f])
    read = list(_iter_lines(task))
    assert _lines_at(f, [pos for pos, _, _ in read]) == [line for _, _, line in read]
