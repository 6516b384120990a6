"""Spark computes a valid record's identity hash from its event columns exactly as the
reference computes it from the record (sha256 of the canonical JSON: sorted keys, compact,
``ensure_ascii=False``, absent fields left out; CONTRACT.md 1.2's duplicate rule rests on
it). The vectorized validator leaves these hashes to Spark
(:func:`echo.sources.column_hash`); :mod:`tests.test_validate_arrow` checks in Python that
the records it leaves are exactly their event columns."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pyspark.sql.types import LongType, StructField, StructType

from echo.contract import COMMON_OPTIONAL, COMMON_REQUIRED, TYPE_FIELDS
from echo.lake.tables import EVENT_FIELDS
from echo.sources import column_hash, list_inputs, read_records
from echo.stages.validate import canonical_json, sha256_hex, validate_json_line
from echo.stages.validate_arrow import KINDS
from tests.test_validate_arrow import lines

#: every character a string value can hold when the vectorized validator leaves the
#: record's hash to Spark: no surrogate, no control character but the five JSON writes
#: with a short escape (the others go to the reference validator)
CHARS = st.one_of(
    st.sampled_from(list('ab "\\/\n\r\t\b\f\x7f\x80\x9féß€😀\u2028\u2029\ufeff\uffff')),
    st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")),
)
SCHEMA = StructType([StructField("i", LongType(), False), *[StructField(f.name, f.dataType, True) for f in EVENT_FIELDS]])
INT64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)


@st.composite
def event_columns(draw: st.DrawFn) -> dict[str, Any]:
    """Values of the event columns, each field absent (null) or of its kind."""
    return {
        f.name: draw(st.none() | (INT64 if KINDS[f.name] == "i" else st.text(alphabet=CHARS, max_size=30)))
        for f in EVENT_FIELDS
    }


@st.composite
def valid_lines(draw: st.DrawFn) -> bytes:
    """A valid record of a known type, its optional fields present or not (the records
    whose hash the vectorized validator leaves to Spark), as a JSON writer writes it."""
    kind = draw(st.sampled_from(sorted(TYPE_FIELDS)))
    required, optional = TYPE_FIELDS[kind]
    fields = {**COMMON_REQUIRED, **required} | {k: v for k, v in {**COMMON_OPTIONAL, **optional}.items() if draw(st.booleans())}
    rec = {k: draw(st.integers(0, 2**62) if KINDS[k] == "i" else st.text(alphabet=CHARS, max_size=20)) for k in fields}
    rec["event_type"] = kind
    return json.dumps(rec, ensure_ascii=draw(st.booleans())).encode("utf-8")


def _reference_hash(event: dict[str, Any]) -> str:
    return sha256_hex(canonical_json({k: v for k, v in event.items() if v is not None}).encode("utf-8"))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(event_columns(), min_size=1, max_size=40))
def test_spark_hashes_event_columns_as_the_reference_hashes_the_record(spark, events):
    rows = [(i, *(e[f.name] for f in EVENT_FIELDS)) for i, e in enumerate(events)]
    got = spark.createDataFrame(rows, SCHEMA).select("i", column_hash().alias("h")).orderBy("i").collect()
    assert [r["h"] for r in got] == [_reference_hash(e) for e in events]


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(st.lists(lines() | valid_lines(), min_size=1, max_size=40))
def test_every_record_read_has_the_reference_content_hash(spark, tmp_path_factory, batch):
    """Through the whole read path: hashes left to Spark and hashes computed while reading."""
    batch = [b.rstrip(b"\r") for b in batch if b.rstrip(b"\r").strip()]  # as the reader gives the lines
    if not batch:
        return
    path = tmp_path_factory.mktemp("hash") / "events.jsonl"
    path.write_bytes(b"\n".join(batch) + b"\n")
    rows = read_records(spark, list_inputs([str(path)]), max_text_bytes=64).orderBy("pos").select("content_hash")
    assert [r[0] for r in rows.collect()] == [validate_json_line(b, max_text_bytes=64).content_hash for b in batch]


def test_spark_leaves_out_absent_fields_whatever_the_sessions_json_setting(spark):
    """``spark.sql.jsonGenerator.ignoreNullFields`` set to false must not add ``null``
    members to the canonical text."""
    event = {f.name: None for f in EVENT_FIELDS} | {"event_id": "e", "ts_ms": 5}
    df = spark.createDataFrame([(0, *(event[f.name] for f in EVENT_FIELDS))], SCHEMA)
    spark.conf.set("spark.sql.jsonGenerator.ignoreNullFields", "false")
    try:
        (got,) = df.select(column_hash()).first()
    finally:
        spark.conf.unset("spark.sql.jsonGenerator.ignoreNullFields")
    assert got == _reference_hash(event)
