"""Ingest: classify every record read as kept, duplicate or quarantined (CONTRACT.md 1.2).

Pure DataFrame transforms; :mod:`echo.jobs.ingest` reads and writes.

Rules:
- an invalid record is quarantined with its first reason (decided while reading);
- records with one ``event_id`` and the same content (canonical JSON) are one event;
  "first" is ingestion order: earlier runs (bronze) first, then ``(path_idx, pos)``;
- the same ``event_id`` with other content than the first is ``conflicting_duplicate``;
- a record identical to one already kept or already quarantined is a duplicate, so
  re-ingesting the same input changes nothing;
- records read = kept + duplicates + quarantined.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, TypedDict

from pyspark.sql import Window
from pyspark.sql import functions as F

from echo.lake.tables import EVENT_FIELDS, EVENT_INDEX, EVENT_INDEX_BUCKETS, EVENTS, QUARANTINE
from echo.stages.validate import CONFLICTING_DUPLICATE

if TYPE_CHECKING:
    import datetime

    from pyspark.sql import DataFrame

KEPT, DUPLICATE, QUARANTINED = "kept", "duplicate", "quarantined"


def classify(records: DataFrame, known_events: DataFrame, known_quarantine: DataFrame) -> DataFrame:
    """Add ``status`` (kept|duplicate|quarantined) and ``final_reason`` to each record.

    ``known_events``: ``event_id, content_hash`` of bronze/events (earlier runs).
    ``known_quarantine``: ``record_hash`` of bronze/quarantine (earlier runs).
    """
    order = [F.col("path_idx"), F.col("pos")]
    in_q = known_quarantine.select(F.col("record_hash").alias("content_hash")).distinct().withColumn(
        "_in_quarantine", F.lit(True)
    )
    recs = records.join(in_q, on="content_hash", how="left")

    valid = recs.where(F.col("q_reason").isNull())
    invalid = recs.where(F.col("q_reason").isNotNull())

    # -- valid records: the reference content of each event_id ---------------------------
    known = known_events.select(
        F.col("event_id"), F.col("content_hash").alias("_bronze_hash"), F.lit(True).alias("_in_bronze")
    )
    v = valid.join(known, on="event_id", how="left")
    # One sort serves both windows: the records of an event_id by content, then in
    # ingestion order. The batch's reference content is that of its first record (the
    # lowest (path_idx, pos), unique per record); a record is the first of its content
    # when the record before it in this order has another content (or there is none).
    by_id = Window.partitionBy("event_id").orderBy("content_hash", *order)
    whole = by_id.rowsBetween(Window.unboundedPreceding, Window.unboundedFollowing)
    first_in_batch = F.min_by("content_hash", F.struct(*order)).over(whole)
    v = v.withColumn("_ref_hash", F.coalesce(F.col("_bronze_hash"), first_in_batch))
    previous = F.lag("content_hash").over(by_id)
    v = v.withColumn("_first_same", previous.isNull() | (previous != F.col("content_hash")))
    is_ref = F.col("content_hash") == F.col("_ref_hash")
    v = v.withColumn(
        "status",
        F.when(is_ref & F.col("_in_bronze").isNull() & F.col("_first_same"), F.lit(KEPT))
        .when(is_ref, F.lit(DUPLICATE))
        .when(F.col("_in_quarantine").isNull() & F.col("_first_same"), F.lit(QUARANTINED))
        .otherwise(F.lit(DUPLICATE)),
    ).withColumn(
        "final_reason",
        F.when(F.col("status") == QUARANTINED, F.lit(CONFLICTING_DUPLICATE)),
    )
    v = v.drop("_bronze_hash", "_in_bronze", "_ref_hash", "_first_same")

    # -- invalid records: quarantined once per identical record ---------------------------
    n_same = F.row_number().over(Window.partitionBy("content_hash").orderBy(*order))
    inv = invalid.withColumn("_n_same", n_same).withColumn(
        "status",
        F.when(F.col("_in_quarantine").isNull() & (F.col("_n_same") == 1), F.lit(QUARANTINED)).otherwise(
            F.lit(DUPLICATE)
        ),
    )
    inv = inv.withColumn("final_reason", F.when(F.col("status") == QUARANTINED, F.col("q_reason"))).drop("_n_same")
    return v.unionByName(inv).drop("_in_quarantine")


def drop_forgotten_users(classified: DataFrame, forgotten_hashes: DataFrame, raws: DataFrame | None = None) -> DataFrame:
    """Records of users deleted by ``forget`` are never stored again: a record that would
    be kept or quarantined (a conflicting duplicate of their event, an invalid record
    naming them) becomes a duplicate (it was already processed, then erased), and is
    counted in ``forgotten`` as well. ``forgotten_hashes``: ``user_id_sha256``.

    "Naming them": the record's ``user_id`` (when validation could read one), or, for a
    record that would be quarantined, any JSON string literal in its raw text whose value
    hashes to a forgotten user (what ``forget`` deletes from quarantine: the user id as a
    JSON string anywhere in ``raw``), so that a malformed record cannot bring a forgotten
    id back. Only hashes are compared: the lake never holds a forgotten id in clear.

    ``raws``: ``content_hash, raw, raw_bytes`` of the records, when ``classified`` does
    not carry the raw text itself (ingest classifies the narrow columns only)."""
    hashes = forgotten_hashes.select(F.col("user_id_sha256").alias("_fh")).distinct()
    marked = classified.withColumn("_fh", F.sha2(F.col("user_id"), 256)).join(
        F.broadcast(hashes.withColumn("_gone", F.lit(True))), "_fh", "left"
    )
    refused = classified.where(F.col("status") == QUARANTINED)
    if raws is not None:
        refused = raws.join(refused.select("content_hash").distinct(), "content_hash", "left_semi")
    named = raw_naming(refused, hashes)
    marked = marked.join(named.withColumn("_named", F.lit(True)), "content_hash", "left")
    by_id = F.col("_gone").isNotNull()
    by_raw = (F.col("status") == QUARANTINED) & F.col("_named").isNotNull()
    gone = (F.col("status").isin(KEPT, QUARANTINED) & by_id) | by_raw
    return (
        marked.withColumn("forgotten", gone)
        .withColumn("status", F.when(gone, F.lit(DUPLICATE)).otherwise(F.col("status")))
        .drop("_fh", "_gone", "_named")
    )


def raw_naming(records: DataFrame, hashes: DataFrame) -> DataFrame:
    """``content_hash`` of the records whose raw text (``raw``, else ``raw_bytes`` as
    UTF-8) holds a JSON string whose value hashes (sha256) to one of ``hashes`` (column
    ``_fh``): the text between any two consecutive double quotes, as written and with
    JSON escapes decoded. Taking every such piece, not every other one, keeps a broken
    record (a missing quote shifts the pairing) from hiding an id. Also what ``forget``
    uses to find a user's quarantined records, so both agree."""
    raw = F.coalesce(F.col("raw"), F.decode(F.col("raw_bytes"), "UTF-8"))
    pieces = F.split(raw, '"')
    tokens = records.select(
        "content_hash",
        F.explode(F.slice(pieces, 2, F.greatest(F.size(pieces) - 2, F.lit(0)))).alias("_tok"),
    )
    decoded = F.from_json(F.concat(F.lit('["'), F.col("_tok"), F.lit('"]')), "array<string>")[0]
    hashed = tokens.select(
        "content_hash", F.explode(F.array(F.sha2(F.col("_tok"), 256), F.sha2(decoded, 256))).alias("_fh")
    )
    return hashed.join(F.broadcast(hashes), "_fh", "left_semi").select("content_hash").distinct()


def event_date(ts_ms_col: str = "ts_ms") -> F.Column:
    return F.to_date(F.timestamp_millis(F.col(ts_ms_col)))


def kept_event_dates(classified: DataFrame) -> list[str]:
    """The bronze/events partitions (``event_date``, ISO) the kept records go to: recorded
    per run in bronze/ingest_runs, so later stages read only those days' new events."""
    kept = classified.where(F.col("status") == KEPT).select(event_date().alias("d")).distinct()
    return sorted(str(r[0]) for r in kept.collect())


def index_keys(df: DataFrame) -> DataFrame:
    """``df`` with ``id_key`` (xxhash64 of ``event_id``) and ``id_bucket``: the keys of
    _echo/event_index."""
    key = F.xxhash64("event_id")
    return df.withColumn("id_key", key).withColumn("id_bucket", F.pmod(key, F.lit(EVENT_INDEX_BUCKETS)).cast("int"))


def batch_ids(records: DataFrame) -> DataFrame:
    """``event_id, id_key, id_bucket`` of the valid records (the ids whose earlier copies
    the duplicate check needs)."""
    ids = records.where(F.col("q_reason").isNull() & F.col("event_id").isNotNull()).select("event_id").distinct()
    return index_keys(ids)


#: the columns ingest classifies: the outcome of a record depends on these only, so the
#: wide columns (raw bytes, event text) are never shuffled (see :func:`exceptions`)
KEY_COLUMNS = ("path_idx", "pos", "event_id", "content_hash", "q_reason", "user_id", "ts_ms")


def exceptions(classified: DataFrame) -> DataFrame:
    """``path_idx, pos, status, final_reason`` of the records that are not kept: joined
    back to the full records to write bronze (kept = valid records minus these)."""
    return classified.where(F.col("status") != KEPT).select("path_idx", "pos", "status", "final_reason")


def kept_records(records: DataFrame, excepted: DataFrame) -> DataFrame:
    """The valid records that are not in ``excepted`` (:func:`exceptions`), with ``status``
    ``kept``: the rows :func:`to_events` writes."""
    valid = records.where(F.col("q_reason").isNull())
    return valid.join(excepted.select("path_idx", "pos"), ["path_idx", "pos"], "left_anti").withColumn(
        "status", F.lit(KEPT)
    )


def quarantined_records(records: DataFrame, excepted: DataFrame) -> DataFrame:
    """The records ``excepted`` marks quarantined, with ``status`` and ``final_reason``:
    the rows :func:`to_quarantine` writes."""
    refused = excepted.where(F.col("status") == QUARANTINED)
    return records.join(refused, ["path_idx", "pos"], "inner")


def needs_raw_bytes(classified: DataFrame, *, copies: bool, few: bool = True) -> DataFrame:
    """``path_idx, pos`` of the valid records whose raw bytes a run needs: those quarantined
    (conflicting copies) and, with ``copies``, the valid records with the same content as
    one (whose raw text :func:`drop_forgotten_users` reads too). The records carry raw
    bytes for refused records only (:func:`echo.sources.read_records`); these are read
    again. ``few``: the quarantined records are few enough to broadcast."""
    conflicting = classified.where((F.col("status") == QUARANTINED) & F.col("q_reason").isNull())
    if not copies:
        return conflicting.select("path_idx", "pos")
    hashes = conflicting.select("content_hash").distinct()
    valid = classified.where(F.col("q_reason").isNull())
    return valid.join(F.broadcast(hashes) if few else hashes, "content_hash", "left_semi").select("path_idx", "pos")


def with_raw_bytes(records: DataFrame, read_again: DataFrame, *, few: bool = True) -> DataFrame:
    """``records`` with the raw bytes of ``read_again`` (``path_idx, pos, raw_bytes``:
    :func:`echo.sources.read_lines` of :func:`needs_raw_bytes`) where they have none.
    ``few``: ``read_again`` is small enough to broadcast."""
    again = read_again.select("path_idx", "pos", F.col("raw_bytes").alias("_again"))
    return (
        records.join(F.broadcast(again) if few else again, ["path_idx", "pos"], "left")
        .withColumn("raw_bytes", F.coalesce(F.col("raw_bytes"), F.col("_again")))
        .drop("_again")
    )


def to_event_index(events: DataFrame) -> DataFrame:
    """_echo/event_index rows of bronze/events rows, one task per bucket (so one file per
    bucket and run), sorted by key within it."""
    return index_layout(index_keys(events).select(*EVENT_INDEX.columns))


def index_layout(rows: DataFrame) -> DataFrame:
    """_echo/event_index rows laid out for writing: all of a bucket in one task, so that
    a write adds one file per bucket, sorted by ``id_key`` (tight min/max statistics)."""
    return rows.repartition(F.col("id_bucket")).sortWithinPartitions("id_bucket", "id_key")


def kept_ids(classified: DataFrame, *, run_no: int) -> DataFrame:
    """``event_id, event_date, run_no`` of the kept records (for :func:`to_event_index`)."""
    kept = classified.where(F.col("status") == KEPT)
    return kept.select("event_id", event_date().alias("event_date"), F.lit(run_no).cast("long").alias("run_no"))


def to_events(classified: DataFrame, *, run_no: int, ingested_at: datetime.datetime) -> DataFrame:
    """The kept records as bronze/events rows."""
    kept = classified.where(F.col("status") == KEPT)
    return kept.select(
        *[F.col(f.name) for f in EVENT_FIELDS.fields],
        F.lit(ingested_at).cast("timestamp").alias("ingested_at"),
        F.col("content_hash"),
        F.col("source"),
        F.lit(run_no).cast("long").alias("run_no"),
        event_date().alias("event_date"),
    ).select(*EVENTS.columns)


def to_quarantine(classified: DataFrame, *, run_no: int, ingested_at: datetime.datetime) -> DataFrame:
    """The refused records as bronze/quarantine rows (raw record, reason, source file)."""
    q = classified.where(F.col("status") == QUARANTINED)
    return q.select(
        F.coalesce(F.col("raw"), F.decode(F.col("raw_bytes"), "UTF-8")).alias("raw"),
        F.col("final_reason").alias("reason"),
        F.col("source"),
        F.lit(ingested_at).cast("timestamp").alias("ingested_at"),
        F.col("raw_bytes"),
        F.col("line_no"),
        F.col("record_event_id").alias("event_id"),
        F.col("content_hash").alias("record_hash"),
        F.col("q_detail").alias("detail"),
        F.lit(run_no).cast("long").alias("run_no"),
        F.to_date(F.lit(ingested_at).cast("timestamp")).alias("ingest_date"),
    ).select(*QUARANTINE.columns)


class Outcomes(TypedDict):
    """What a run's records came to (:func:`count_outcomes`); ``forgotten`` records (of
    users deleted by ``forget``) are included in ``duplicates``."""

    records_read: int
    kept: int
    duplicates: int
    quarantined: int
    quarantined_by_reason: dict[str, int]
    forgotten: int


def count_outcomes(classified: DataFrame) -> Outcomes:
    """records_read, kept, duplicates, quarantined and quarantined_by_reason (one pass)."""
    if "forgotten" not in classified.columns:
        classified = classified.withColumn("forgotten", F.lit(False))
    rows = classified.groupBy("status", "final_reason", "forgotten").count().collect()
    by_reason: dict[str, int] = {}
    totals = {KEPT: 0, DUPLICATE: 0, QUARANTINED: 0}
    forgotten = 0
    for r in rows:
        forgotten += int(r["count"]) if r["forgotten"] else 0
        totals[r["status"]] += int(r["count"])
        if r["status"] == QUARANTINED:
            by_reason[r["final_reason"]] = by_reason.get(r["final_reason"], 0) + int(r["count"])
    return Outcomes(
        records_read=sum(totals.values()),
        kept=totals[KEPT],
        duplicates=totals[DUPLICATE],
        quarantined=totals[QUARANTINED],
        quarantined_by_reason=dict(sorted(by_reason.items())),
        forgotten=forgotten,
    )
