"""Track (CONTRACT.md section 3 and 5): replay every document's changes, distributed.

Events are grouped by ``doc_id`` and each group is replayed by
:func:`echo.stages.replay.replay_document` inside a Spark task
(``groupBy("doc_id").applyInArrow``); nothing is collected to the driver. Then the
acceptance metrics per model x language x UTC day are aggregated from the suggestions.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pyarrow as pa
from pyspark.sql import functions as F

from echo import contract
from echo.lake.tables import ACCEPTANCE_METRICS, EVENT_FIELDS, ORPHAN_DAY, SUGGESTIONS
from echo.stages.replay import DEPENDENCY_COLUMNS, OUTPUT_COLUMNS, ReplaySettings, replay_document
from echo.stages.retention import HORIZONS
from echo.stages.typed import SHAPE_KEYS

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

#: Outcomes that count as accepted in the metrics (CONTRACT.md 5).
ACCEPTED_OUTCOMES = contract.ACCEPTED_OUTCOMES
NOT_ACCEPTED = ("rejected", "ignored")

#: the columns replay reads (``client`` and ``reject``'s ``reason`` are not needed)
REPLAY_INPUT = [f.name for f in EVENT_FIELDS.fields if f.name not in ("client", "reason")] + [
    "session_id",
    "session_end_ts_ms",
]
#: wide columns that only pass through (the chosen shown event's): taken with Arrow,
#: never turned into Python strings
PASS_THROUGH = {"text": "proposal", "prefix": "prefix", "suffix": "suffix"}
_ROW = "__row"
#: the optional input column with the document's first language (a bounded replay)
DOC_LANGUAGE = "doc_language"


def _replay_schema(dependencies: bool = False) -> Any:
    from pyspark.sql.types import LongType, StructField, StructType

    fields = {f.name: f for f in SUGGESTIONS.schema.fields}
    extra = [StructField(c, LongType(), True) for c in DEPENDENCY_COLUMNS] if dependencies else []
    return StructType([fields[c] for c in OUTPUT_COLUMNS] + extra)


def _arrow_schema(dependencies: bool = False) -> pa.Schema:
    from echo.lake.arrow import to_arrow_schema

    return to_arrow_schema(_replay_schema(dependencies), all_nullable=True)


def _replay_group(settings: ReplaySettings, *, doc_language: bool = False, dependencies: bool = False) -> Any:
    schema = _arrow_schema(dependencies)

    narrow = [c for c in REPLAY_INPUT if c not in PASS_THROUGH]
    computed = pa.schema([f for f in schema if f.name not in PASS_THROUGH.values()] + [pa.field(_ROW, pa.int64())])

    def fn(table: pa.Table) -> Iterator[pa.RecordBatch] | pa.Table:
        import pyarrow.compute as pc

        text = table.column("text")
        narrow_table = table.select(narrow).append_column(
            SHAPE_KEYS[0], pc.fill_null(pc.count_substring(text, "\n"), 0)
        ).append_column(SHAPE_KEYS[1], pc.fill_null(pc.ends_with(text, "\n"), False))
        events = narrow_table.to_pylist()
        for i, ev in enumerate(events):
            ev[_ROW] = i
        kw: dict[str, Any] = {"doc_language": table.column(DOC_LANGUAGE)[0].as_py()} if doc_language else {}
        rows = replay_document(events, settings, clean=False, shown_key=_ROW, dependencies=dependencies, **kw)
        out = pa.Table.from_pylist(rows, schema=computed)
        idx = out.column(_ROW)
        for src, dst in PASS_THROUGH.items():
            out = out.append_column(dst, table.column(src).take(idx))
        return out.select(schema.names)

    return fn


def replay_documents(events: DataFrame, *, settings: ReplaySettings, bounded: bool = False) -> DataFrame:
    """Every document's rows (``OUTPUT_COLUMNS``), orphans not yet filtered, from events
    carrying session columns.

    ``bounded``: the events of a document may be only those from some version on (a
    bounded replay, docs/architecture.md): they carry :data:`DOC_LANGUAGE`, the
    document's first language over all its events, and the rows get
    :data:`~echo.stages.replay.DEPENDENCY_COLUMNS`."""
    cols = [*REPLAY_INPUT, DOC_LANGUAGE] if bounded else REPLAY_INPUT
    grouped = events.select(*cols).groupBy("doc_id")
    fn = _replay_group(settings, doc_language=bounded, dependencies=bounded)
    return grouped.applyInArrow(fn, schema=_replay_schema(bounded))


def replay(events: DataFrame, *, settings: ReplaySettings) -> DataFrame:
    """One row per suggestion (``OUTPUT_COLUMNS``) from events carrying session columns."""
    rows = replay_documents(events, settings=settings)
    # An orphan row only stands when no document has a shown event for the suggestion.
    shown = rows.where(F.col("outcome") != "orphan").select("suggestion_id")
    orphans = rows.where(F.col("outcome") == "orphan").join(shown, on="suggestion_id", how="left_anti")
    return rows.where(F.col("outcome") != "orphan").unionByName(orphans)


def track(events: DataFrame, *, settings: ReplaySettings, buckets: int) -> DataFrame:
    """silver/suggestions rows from events with session columns (see assign_sessions)."""
    return with_partition(replay(events, settings=settings), buckets)


def with_partition(rows: DataFrame, buckets: int) -> DataFrame:
    """Replay rows as silver/suggestions rows: ``user_bucket`` and the ``day`` partition
    (the shown day; :data:`ORPHAN_DAY` for orphans)."""
    from echo.lake.partitioning import user_bucket

    day = F.when(F.col("outcome") == "orphan", F.lit(ORPHAN_DAY)).otherwise(shown_day())
    return (
        rows.withColumn("user_bucket", user_bucket("user_id", buckets))
        .withColumn("day", day)
        .select(*SUGGESTIONS.columns)
    )


def shown_day(col: str = "shown_ts_ms") -> Any:
    return F.to_date(F.timestamp_millis(F.col(col)))


def _retention_aggs() -> list[Any]:
    aggs = []
    for h, _ in HORIZONS:
        col = F.col(f"retained_{h}")
        aggs += [
            F.sum(F.coalesce(col, F.lit(0))).cast("long").alias(f"retained_{h}"),
            F.sum(F.when(col.isNotNull(), 1).otherwise(0)).cast("long").alias(f"known_{h}"),
            F.sum(F.when(col.isNotNull(), F.col("accepted_chars")).otherwise(0)).cast("long").alias(f"known_chars_{h}"),
        ]
    return aggs


def acceptance_metrics(suggestions: DataFrame) -> DataFrame:
    """gold/acceptance_metrics rows: per model_id x language x UTC day of shown_ts_ms."""
    s = suggestions.where(F.col("shown_ts_ms").isNotNull()).withColumn("day", shown_day())

    def n(outcome: str) -> Any:
        return F.sum(F.when(F.col("outcome") == outcome, 1).otherwise(0)).cast("long").alias(outcome)

    m = s.groupBy("model_id", "language", "day").agg(
        F.count(F.lit(1)).alias("shown"),
        F.sum(F.when(~F.col("outcome").isin(*NOT_ACCEPTED), 1).otherwise(0)).cast("long").alias("accepted"),
        n("kept"),
        n("refined"),
        n("rewritten"),
        n("deleted"),
        n("replay_gap"),
        F.sum(F.when(F.col("final_text").isNotNull(), F.col("accepted_chars")).otherwise(0))
        .cast("long")
        .alias("accepted_chars"),
        F.sum(F.coalesce(F.col("retained_chars"), F.lit(0))).cast("long").alias("retained_chars"),
        *_retention_aggs(),
    )
    m = m.withColumn("acceptance_rate", F.col("accepted") / F.col("shown")).withColumn(
        "char_retention",
        F.when(F.col("accepted_chars") > 0, F.col("retained_chars") / F.col("accepted_chars")),
    )
    return m.select(*ACCEPTANCE_METRICS.columns)
