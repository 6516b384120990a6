"""Track (CONTRACT.md section 3 and 5): replay every document's changes, distributed.

Events are grouped by ``doc_id`` and each group is replayed by
:func:`echo.stages.replay.replay_document` inside a Spark task
(``groupBy("doc_id").applyInArrow``); nothing is collected to the driver. Then the
acceptance metrics per model x language x UTC day are aggregated from the suggestions.
"""

from __future__ import annotations

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

#: wide columns of a suggestion's chosen shown event that only pass through the replay
#: (source column -> row column): never shuffled with the events nor shipped to Python,
#: joined to the rows by the chosen event's id afterwards (:func:`with_shown_texts`)
PASS_THROUGH = {"text": "proposal", "prefix": "prefix", "suffix": "suffix"}
#: the chosen shown event's ``event_id``, carried by replay rows until that join
SHOWN_EVENT = "_shown_event_id"
#: the columns replay reads (``client`` and ``reject``'s ``reason`` are not needed; of the
#: proposal ``text`` only its shape, computed in Spark by :func:`narrow`)
REPLAY_INPUT = [f.name for f in EVENT_FIELDS.fields if f.name not in ("client", "reason", *PASS_THROUGH)] + [
    *SHAPE_KEYS,
    "session_id",
    "session_end_ts_ms",
]
#: the optional input column with the document's first language (a bounded replay)
DOC_LANGUAGE = "doc_language"


def _replay_schema(dependencies: bool = False) -> Any:
    """The replay rows' schema: :data:`OUTPUT_COLUMNS` less the pass-through ones, plus
    :data:`SHOWN_EVENT` (and :data:`DEPENDENCY_COLUMNS`)."""
    from pyspark.sql.types import LongType, StringType, StructField, StructType

    fields = {f.name: f for f in SUGGESTIONS.schema.fields}
    kept = [fields[c] for c in OUTPUT_COLUMNS if c not in PASS_THROUGH.values()]
    extra = [StructField(c, LongType(), True) for c in DEPENDENCY_COLUMNS] if dependencies else []
    return StructType([*kept, StructField(SHOWN_EVENT, StringType(), True), *extra])


def _replay_group(settings: ReplaySettings, *, doc_language: bool = False, dependencies: bool = False) -> Any:
    from echo.lake.arrow import to_arrow_schema

    spark_schema = _replay_schema(dependencies)
    # replay_document writes the chosen shown event's id under its own key, "event_id"
    computed = to_arrow_schema(spark_schema, all_nullable=True)
    computed = pa.schema([f.with_name("event_id") if f.name == SHOWN_EVENT else f for f in computed])
    names = spark_schema.names

    def fn(table: pa.Table) -> pa.Table:
        kw: dict[str, Any] = {"doc_language": table.column(DOC_LANGUAGE)[0].as_py()} if doc_language else {}
        events = table.drop_columns([DOC_LANGUAGE]).to_pylist() if doc_language else table.to_pylist()
        rows = replay_document(events, settings, clean=False, shown_key="event_id", dependencies=dependencies, **kw)
        return pa.Table.from_pylist(rows, schema=computed).rename_columns(names)

    return fn


def narrow(events: DataFrame) -> DataFrame:
    """Events without the wide :data:`PASS_THROUGH` columns, with what the replay needs of
    the proposal ``text``, its shape (:data:`~echo.stages.typed.SHAPE_KEYS`: line breaks,
    whether it ends with one; :func:`~echo.stages.typed.proposal_lines`), computed in
    Spark. Applied before anything shuffles the events."""
    text = F.col("text")
    newlines = F.length(text) - F.length(F.translate(text, "\n", ""))
    return (
        events.withColumn(SHAPE_KEYS[0], F.coalesce(newlines, F.lit(0)))
        .withColumn(SHAPE_KEYS[1], F.coalesce(text.endswith("\n"), F.lit(False)))
        .drop(*PASS_THROUGH)
    )


def replay_documents(events: DataFrame, *, settings: ReplaySettings, bounded: bool = False) -> DataFrame:
    """Every document's rows (:data:`OUTPUT_COLUMNS` less the pass-through ones, with
    :data:`SHOWN_EVENT`), orphans not yet filtered, from :func:`narrow` events carrying
    session columns; :func:`with_shown_texts` completes them.

    ``bounded``: the events of a document may be only those from some version on (a
    bounded replay, docs/architecture.md): they carry :data:`DOC_LANGUAGE`, the
    document's first language over all its events, and the rows get
    :data:`~echo.stages.replay.DEPENDENCY_COLUMNS`."""
    cols = [*REPLAY_INPUT, DOC_LANGUAGE] if bounded else REPLAY_INPUT
    grouped = events.select(*cols).groupBy("doc_id")
    fn = _replay_group(settings, doc_language=bounded, dependencies=bounded)
    return grouped.applyInArrow(fn, schema=_replay_schema(bounded))


def shown_texts(events: DataFrame) -> DataFrame:
    """``SHOWN_EVENT`` and the pass-through columns of the shown events among ``events``."""
    wide = [F.col(src).alias(dst) for src, dst in PASS_THROUGH.items()]
    return events.where(F.col("event_type") == "shown").select(F.col("event_id").alias(SHOWN_EVENT), *wide)


def with_shown_texts(rows: DataFrame, texts: DataFrame) -> DataFrame:
    """Replay rows with their chosen shown event's pass-through columns (null without
    one), in :data:`OUTPUT_COLUMNS` order (then any other columns). ``texts``:
    :func:`shown_texts` of events holding every chosen shown event (event ids are
    unique in bronze, so each row gets one)."""
    out = rows.join(texts, SHOWN_EVENT, "left")
    rest = [c for c in rows.columns if c not in OUTPUT_COLUMNS and c != SHOWN_EVENT]
    return out.select(*OUTPUT_COLUMNS, *rest)


def replay(events: DataFrame, *, settings: ReplaySettings) -> DataFrame:
    """One row per suggestion (``OUTPUT_COLUMNS``) from events carrying session columns."""
    rows = with_shown_texts(replay_documents(narrow(events), settings=settings), shown_texts(events))
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
