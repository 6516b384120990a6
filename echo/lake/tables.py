"""Every table of the lake, defined in one place: path, explicit schema, partitioning,
natural key. Both Delta backends and every job take their schemas from here.

Columns required by ``CONTRACT.md`` section 5 come first in each schema; the rest are
what operators need (lineage, partition columns, counters for metrics).
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass

from pyspark.sql.types import (
    ArrayType,
    BinaryType,
    BooleanType,
    DataType,
    DateType,
    DoubleType,
    IntegerType,
    LongType,
    StringType,
    StructField,
    StructType,
    TimestampType,
)

from echo import contract


def _f(name: str, tp: DataType, nullable: bool = True) -> StructField:
    return StructField(name, tp, nullable)


S, L, D, I = StringType(), LongType(), DoubleType(), IntegerType()  # noqa: E741

#: The event fields of CONTRACT.md section 1 (common + per type), in bronze order; the
#: common required fields are non-null.
EVENT_FIELDS = StructType(
    [
        _f(name, S if contract.field_kind(name) == contract.STRING else L, name not in contract.COMMON_REQUIRED)
        for name in contract.EVENT_COLUMNS
    ]
)


#: The ``day`` partition of silver/suggestions holding every orphan row (orphans have no
#: shown day), so that a run finds the orphans a new ``shown`` resolves in one partition.
ORPHAN_DAY = datetime.date(1970, 1, 1)


#: Distinct values a Parquet bloom filter is sized for (false-positive rate 1 %): 64 KiB a
#: column chunk. A suggestions row group holds fewer rows than this (the rows are wide:
#: final text, prefix, suffix); one that holds more keeps working, with more false hits.
BLOOM_FILTER_NDV = 50_000


@dataclass(frozen=True)
class Table:
    """A lake table: its path under the lake root and its explicit schema.

    ``bloom_filters``: columns whose Parquet files carry a bloom filter, so that a lookup
    of a few values (``col IN (...)``) reads only the footers and bloom filters of the
    files without them (Spark's Parquet reader skips those row groups)."""

    name: str
    schema: StructType
    partition_by: tuple[str, ...]
    keys: tuple[str, ...]
    description: str
    bloom_filters: tuple[str, ...] = ()

    @property
    def columns(self) -> list[str]:
        return [f.name for f in self.schema.fields]

    def parquet_options(self) -> dict[str, str]:
        """Parquet writer options of the table's files (its bloom filters)."""
        out: dict[str, str] = {}
        for col in self.bloom_filters:
            out[f"parquet.bloom.filter.enabled#{col}"] = "true"
            out[f"parquet.bloom.filter.expected.ndv#{col}"] = str(BLOOM_FILTER_NDV)
        return out


EVENTS = Table(
    name="bronze/events",
    schema=StructType(
        [
            *EVENT_FIELDS.fields,
            _f("ingested_at", TimestampType(), False),
            _f("content_hash", S, False),  # sha256 of the record's canonical JSON
            _f("source", S, False),  # file the event was first read from
            _f("run_no", L, False),  # ingest run that kept it (monotonic per lake)
            _f("event_date", DateType(), False),  # UTC date of ts_ms
        ]
    ),
    partition_by=("event_date",),
    keys=("event_id",),
    description="one row per event kept (deduplicated)",
)

QUARANTINE = Table(
    name="bronze/quarantine",
    schema=StructType(
        [
            _f("raw", S, False),  # the record as text (invalid UTF-8 shown as U+FFFD)
            _f("reason", S, False),
            _f("source", S, False),
            _f("ingested_at", TimestampType(), False),
            _f("raw_bytes", BinaryType(), False),  # the exact bytes, nothing lost
            _f("line_no", L),  # 1-based line in a JSONL file, row number in Parquet
            _f("event_id", S),  # when the record had a string event_id
            _f("record_hash", S, False),  # identity for re-ingest dedup
            _f("detail", S),  # which field failed, for operators
            _f("run_no", L, False),
            _f("ingest_date", DateType(), False),
        ]
    ),
    partition_by=("ingest_date",),
    keys=("record_hash",),
    description="one row per record refused, with the first reason that applies",
)

INGEST_RUNS = Table(
    name="bronze/ingest_runs",
    schema=StructType(
        [
            _f("run_no", L, False),
            _f("started_at", TimestampType(), False),
            _f("finished_at", TimestampType(), False),
            _f("inputs", S, False),  # JSON list of input paths
            _f("records_read", L, False),
            _f("kept", L, False),
            _f("duplicates", L, False),
            _f("quarantined", L, False),
            _f("quarantined_by_reason", S, False),  # JSON object reason -> count
            _f("config", S, False),  # resolved config, JSON
            _f("event_dates", S),  # JSON list of the event_date partitions its kept events went to
        ]
    ),
    partition_by=(),
    keys=("run_no",),
    description="one row per ingest run: the counts it reported",
)

SESSIONS = Table(
    name="silver/sessions",
    schema=StructType(
        [
            _f("session_id", S, False),
            _f("user_id", S, False),
            _f("start_ts_ms", L, False),
            _f("end_ts_ms", L, False),
            _f("n_events", L, False),
            _f("n_docs", L, False),
            _f("duration_s", D, False),
            _f("user_bucket", I, False),
            _f("start_date", DateType(), False),  # UTC date of start_ts_ms (the partition)
        ]
    ),
    partition_by=("start_date",),
    keys=("session_id",),
    description="one row per session (per user, split on inactivity gaps)",
)

SUGGESTIONS = Table(
    name="silver/suggestions",
    schema=StructType(
        [
            _f("suggestion_id", S, False),
            _f("session_id", S),
            _f("user_id", S, False),
            _f("doc_id", S, False),
            _f("model_id", S),
            _f("language", S),
            _f("shown_ts_ms", L),
            _f("proposal", S),
            _f("accepted_text", S),
            _f("final_text", S),
            _f("outcome", S, False),
            _f("edit_similarity", D),
            # beyond the contract's minimum
            _f("prefix", S),
            _f("suffix", S),
            _f("shown_offset", L),
            _f("latency_ms", L),
            _f("accepted_ts_ms", L),
            _f("accepted_doc_version", L),
            _f("horizon_ts_ms", L),
            _f("walk_end", S),  # horizon | exhausted | lost | ambiguous (accepted only)
            _f("changes_applied", L),
            _f("accepted_chars", L),  # len(accepted_text) in code points
            _f("retained_chars", L),  # chars of accepted_text that survive in final_text (LCS)
            # typed instead (rejected, ignored, rewritten; docs/signals.md)
            _f("typed_text", S),  # what the user wrote at the shown offset (null: unknown/n.a.)
            _f("typed_end_ts_ms", L),  # the change that made it final (null: nothing typed)
            _f("typed_end", S),  # lines | horizon | exhausted | gap | final (rewritten)
            # retention at horizons after the accept (docs/signals.md; null: unknown/n.a.)
            _f("retained_30s", L),
            _f("retained_2m", L),
            _f("retained_5m", L),
            _f("retained_10m", L),
            _f("retained_15m", L),
            _f("user_bucket", I, False),
            # the partition: UTC date of shown_ts_ms; every orphan row in ORPHAN_DAY
            _f("day", DateType(), False),
        ]
    ),
    partition_by=("day",),
    keys=("suggestion_id",),
    description="one row per shown suggestion (and per orphan) with its outcome",
    # track's orphan rule looks a new orphan's suggestion up in every day (echo.jobs.track)
    bloom_filters=("suggestion_id",),
)

ACCEPTANCE_METRICS = Table(
    name="gold/acceptance_metrics",
    schema=StructType(
        [
            _f("model_id", S),
            _f("language", S),
            _f("day", DateType(), False),
            _f("shown", L, False),
            _f("accepted", L, False),
            _f("acceptance_rate", D, False),
            _f("kept", L, False),
            _f("refined", L, False),
            _f("rewritten", L, False),
            _f("deleted", L, False),
            _f("replay_gap", L, False),
            _f("accepted_chars", L, False),
            _f("retained_chars", L, False),
            _f("char_retention", D),  # retained_chars / accepted_chars (null if no chars)
            # retention at horizons (docs/signals.md): per horizon H, retained_H = the sum of
            # the suggestions' retained_H, known_H = how many have a known value,
            # known_chars_H = their accepted_chars (retention rate = retained_H / known_chars_H)
            *[
                _f(f"{kind}_{h}", L, False)
                for h in ("30s", "2m", "5m", "10m", "15m")
                for kind in ("retained", "known", "known_chars")
            ],
        ]
    ),
    partition_by=("day",),
    keys=("model_id", "language", "day"),
    description="one row per model_id x language x UTC day of shown_ts_ms",
)

REFINEMENT_PAIRS = Table(
    name="gold/refinement_pairs",
    schema=StructType(
        [
            _f("suggestion_id", S, False),
            _f("prefix", S),
            _f("suffix", S),
            _f("proposal", S, False),
            _f("final_text", S, False),
            _f("outcome", S, False),
            _f("language", S),
            _f("model_id", S),
            _f("split", S, False),
            # lineage and weighting
            _f("user_id", S, False),
            _f("session_id", S),
            _f("doc_id", S, False),
            _f("shown_ts_ms", L),
            _f("accepted_ts_ms", L),
            _f("edit_similarity", D),
            _f("weight", D, False),
            _f("scrubbed", L, False),  # number of secrets/PII replaced in this pair
            _f("source_version", L, False),  # silver/suggestions version it came from
            _f("survival_s", D),  # seconds the final text was observed after the accept
            _f("scrub_types", S),  # comma-separated types of what was scrubbed (null: none)
            _f("dedup_key", S, False),  # near-duplicate key (shards keep the lowest suggestion_id)
            _f("user_bucket", I, False),
            # the partition: the suggestion's shown day (silver/suggestions' ``day``)
            _f("day", DateType(), False),
        ]
    ),
    partition_by=("day",),
    keys=("suggestion_id", "doc_id"),
    description="one row per kept or refined suggestion that passed the quality filters",
)

FEEDBACK = Table(
    name="gold/feedback",
    schema=StructType(
        [
            _f("suggestion_id", S, False),
            _f("prefix", S),  # the prompt's context (the shards build the FIM prompt)
            _f("suffix", S),
            _f("completion", S, False),  # final text (desirable) or proposal (undesirable)
            _f("label", BooleanType(), False),  # True: desirable
            _f("outcome", S, False),
            _f("language", S),
            _f("model_id", S),
            _f("split", S, False),
            # lineage and weighting
            _f("user_id", S, False),
            _f("session_id", S),
            _f("doc_id", S, False),
            _f("shown_ts_ms", L),
            _f("edit_similarity", D),
            _f("weight", D, False),
            _f("scrubbed", L, False),
            _f("source_version", L, False),
            _f("dedup_key", S, False),  # near-duplicate key (with the label)
            _f("user_bucket", I, False),
            # the partition: the suggestion's shown day (silver/suggestions' ``day``)
            _f("day", DateType(), False),
        ]
    ),
    partition_by=("day",),
    keys=("suggestion_id", "doc_id"),
    description="one row per suggestion whose outcome is unpaired feedback (KTO): kept or "
    "refined final texts desirable, deleted or rewritten proposals undesirable",
)

#: Typed-instead pairs (docs/signals.md, docs/pairs.md): a rejected, ignored or rewritten
#: suggestion with what the user wrote at its position instead (chosen) against the
#: proposal (rejected); the same scrubbing, filters and split as gold/refinement_pairs.
TYPED_PAIRS = Table(
    name="gold/typed_pairs",
    schema=StructType(
        [
            _f("suggestion_id", S, False),
            _f("prefix", S),
            _f("suffix", S),
            _f("proposal", S, False),  # rejected
            _f("typed_text", S, False),  # chosen
            _f("outcome", S, False),  # rejected | ignored | rewritten
            _f("language", S),
            _f("model_id", S),
            _f("split", S, False),
            _f("user_id", S, False),
            _f("session_id", S),
            _f("doc_id", S, False),
            _f("shown_ts_ms", L),
            _f("typed_end_ts_ms", L),
            _f("typed_end", S),
            _f("weight", D, False),
            _f("scrubbed", L, False),
            _f("source_version", L, False),  # silver/suggestions version it came from
            _f("scrub_types", S),
            _f("dedup_key", S, False),  # near-duplicate key over the typed text
            _f("user_bucket", I, False),
            _f("day", DateType(), False),  # the suggestion's shown day
        ]
    ),
    partition_by=("day",),
    keys=("suggestion_id", "doc_id"),
    description="one row per rejected, ignored or rewritten suggestion with a typed text that passed the filters",
)

SUGGESTION_GRAPH = Table(
    name="gold/suggestion_graph",
    schema=StructType(
        [
            _f("suggestion_id", S, False),
            _f("user_id", S, False),
            _f("session_id", S),
            _f("doc_id", S, False),
            _f("model_id", S),
            _f("language", S),
            _f("shown_ts_ms", L, False),
            _f("accepted_ts_ms", L),  # null: not accepted (known at accept time)
            _f("known_ts_ms", L, False),  # when the outcome is final (accept or show + window)
            _f("outcome", S, False),  # the label (never a feature)
            _f("features", ArrayType(D, True), False),  # show/accept-time features only
            _f("feature_version", S, False),
            _f("source_version", L, False),  # silver/suggestions version it came from
            _f("user_bucket", I, False),
        ]
    ),
    partition_by=("user_bucket",),
    keys=("suggestion_id",),
    description="one node per shown suggestion: features known at show/accept time, outcome label",
)

SUGGESTION_EDGES = Table(
    name="gold/suggestion_edges",
    schema=StructType(
        [
            _f("src_id", S, False),  # the earlier suggestion
            _f("dst_id", S, False),  # the later suggestion
            _f("edge_type", S, False),  # session | document | user | context
            _f("weight", D, False),
            _f("gap_ms", L),  # shown_ts_ms(dst) - shown_ts_ms(src)
            _f("user_id", S, False),  # both ends belong to this user
            _f("user_bucket", I, False),
        ]
    ),
    partition_by=("user_bucket",),
    keys=("src_id", "dst_id", "edge_type"),
    description="one row per related pair of suggestions of one user and kind of relation",
)

OUTCOME_PREDICTIONS = Table(
    name="gold/outcome_predictions",
    schema=StructType(
        [
            _f("suggestion_id", S, False),
            _f("user_id", S, False),
            _f("model_id", S),
            _f("language", S),
            _f("shown_ts_ms", L, False),
            _f("day", DateType(), False),  # UTC date of shown_ts_ms
            _f("outcome", S, False),  # measured outcome (may be replay_gap or not yet final)
            _f("horizon_open", BooleanType(), False),  # outcome not final at the forecast's as-of
            _f("used_for_training", BooleanType(), False),
            _f("p_ignored", D, False),
            _f("p_rejected", D, False),
            _f("p_kept", D, False),
            _f("p_refined", D, False),
            _f("p_rewritten", D, False),
            _f("p_deleted", D, False),
            _f("predicted", S, False),  # argmax class
            _f("forecaster", S, False),  # e.g. graphsb+sage+reweight
            _f("forecaster_version", S, False),
            _f("as_of_ms", L, False),
            _f("predicted_at", TimestampType(), False),
            _f("user_bucket", I, False),
        ]
    ),
    partition_by=("user_bucket",),
    keys=("suggestion_id",),
    description="one row per shown suggestion: forecast class probabilities",
)

OUTCOME_ESTIMATES = Table(
    name="gold/outcome_estimates",
    schema=StructType(
        [
            _f("model_id", S),
            _f("language", S),
            _f("day", DateType(), False),
            _f("shown", L, False),
            _f("kept", L, False),  # measured, as in gold/acceptance_metrics
            _f("refined", L, False),
            _f("rewritten", L, False),
            _f("deleted", L, False),
            _f("replay_gap", L, False),
            _f("est_kept", D, False),  # measured + the forecast mass of the replay_gap rows
            _f("est_refined", D, False),
            _f("est_rewritten", D, False),
            _f("est_deleted", D, False),
            _f("open", L, False),  # suggestions whose horizon is still open
            _f("forecaster", S, False),
            _f("forecaster_version", S, False),
        ]
    ),
    partition_by=("day",),
    keys=("model_id", "language", "day"),
    description="per model_id x language x day: measured outcomes beside estimates for replay_gap",
)

STAGE_STATE = Table(
    name="_echo/stage_state",
    schema=StructType(
        [
            _f("stage", S, False),
            _f("run_no", L, False),  # highest bronze ingest run the stage has processed
            _f("updated_at", TimestampType(), False),
            _f("detail", S),  # JSON: input table versions, counts
        ]
    ),
    partition_by=(),
    keys=("stage",),
    description="incremental-processing watermark per stage",
)

FORGOTTEN_USERS = Table(
    name="_echo/forgotten_users",
    schema=StructType(
        [
            _f("user_id_sha256", S, False),  # sha256 hex of the UTF-8 user id
            _f("forgotten_at", TimestampType(), False),
            _f("detail", S),  # JSON: rows deleted per table
        ]
    ),
    partition_by=(),
    keys=("user_id_sha256",),
    description="users deleted by 'forget' (hashed); ingest drops their records",
)

#: Incremental state of sessionize, read by track: per run, the time intervals of each
#: user whose sessions that run recomputed (docs/architecture.md, "Incremental runs").
SESSION_CHANGES = Table(
    name="_echo/session_changes",
    schema=StructType(
        [
            _f("user_id", S, False),
            _f("lo_ts_ms", L, False),  # the changed session's start
            _f("hi_ts_ms", L, False),  # its end
            _f("run_no", L, False),  # the sessionize run (its up-to ingest run)
        ]
    ),
    partition_by=("run_no",),
    keys=("user_id", "lo_ts_ms", "hi_ts_ms", "run_no"),
    description="per sessionize run: the time ranges of the sessions it removed or added (changed sessions)",
)

#: Incremental state of track: the bronze event_date partitions each document has
#: events in, so that replaying a document reads only those days.
DOC_DAYS = Table(
    name="_echo/doc_days",
    schema=StructType(
        [
            _f("doc_id", S, False),
            _f("user_id", S, False),
            _f("event_date", DateType(), False),
            _f("min_version", L, False),  # the lowest doc_version of the run's events that day
            _f("max_version", L, False),  # the highest
            # the earliest (ts_ms, event_id) of those events with a language, and its language
            _f("language_ts_ms", L, True),
            _f("language_event_id", S, True),
            _f("language", S, True),
            _f("run_no", L, False),  # the track run that recorded it
        ]
    ),
    partition_by=("run_no",),
    keys=("doc_id", "event_date"),
    description="per document: the UTC days it has events on, their version range and first language "
    "(one row per doc x day x run)",
)

#: Incremental state of track (docs/architecture.md, "Bounded replay"): per suggestion,
#: the versions its row depends on, as of the track run that last replayed it (the row
#: with the highest run_no counts).
TRACK_STATE = Table(
    name="_echo/track_state",
    schema=StructType(
        [
            _f("doc_id", S, False),
            _f("suggestion_id", S, False),
            _f("user_id", S, False),
            _f("lo_version", L, False),  # the lowest doc_version of its own events
            _f("hi_version", L, False),  # the highest
            _f("reach_version", L, True),  # the highest version its walks read; null: any
            _f("run_no", L, False),  # the track run that replayed it
        ]
    ),
    partition_by=("run_no",),
    keys=("doc_id", "suggestion_id", "run_no"),
    description="per suggestion and track run that replayed it: the version range its row depends on",
)

#: Incremental state of track, read by pairs: per track run, the silver/suggestions rows
#: it wrote or removed (their keys and day partitions), so that pairs recomputes only those.
SUGGESTION_CHANGES = Table(
    name="_echo/suggestion_changes",
    schema=StructType(
        [
            _f("suggestion_id", S, False),
            _f("doc_id", S, False),
            _f("user_id", S, False),
            _f("day", DateType(), False),  # the row's silver/suggestions partition
            _f("run_no", L, False),  # the track run (its up-to ingest run)
        ]
    ),
    partition_by=("run_no",),
    keys=("suggestion_id", "doc_id", "day", "run_no"),
    description="per track run: the silver/suggestions rows it wrote or removed",
)

#: Buckets of the event-id index (a lake constant: changing it would need a rebuild).
EVENT_INDEX_BUCKETS = 64
#: Compaction of the event-id index: each ingest run rewrites into one file each at most
#: this many buckets, the most crowded of those holding at least this many files (every
#: run adds one file per bucket), so a bucket holds about 8-16 files and a run rewrites
#: at most an eighth of the index.
EVENT_INDEX_COMPACT = 8

#: Incremental state of ingest: where each kept event_id lives. 8-byte hash keys, so that
#: the duplicate check of a batch reads these (and only the buckets its ids fall in), then
#: only the bronze days holding a matching id, instead of every event_id ever kept.
EVENT_INDEX = Table(
    name="_echo/event_index",
    schema=StructType(
        [
            _f("id_bucket", I, False),  # pmod(id_key, EVENT_INDEX_BUCKETS)
            _f("id_key", L, False),  # xxhash64(event_id)
            _f("event_date", DateType(), False),  # the bronze/events partition of the event
            _f("run_no", L, False),  # the ingest run that kept it
        ]
    ),
    partition_by=("id_bucket",),
    keys=("id_key", "event_date", "run_no"),
    description="per kept event: a hash of its event_id and its bronze/events day",
)

#: The lake's lease and invariants: one row (``slot`` 0). Created with the lake in one
#: put-if-absent Delta commit (version 0) that fixes ``buckets`` and ``format_version``
#: for the lake's life; every writing command then takes the lease with a conditional
#: MERGE (see :mod:`echo.lake.lease`). Coordination state, not data: not in ALL_TABLES.
LAKE_LEASE = Table(
    name="_echo/lease",
    schema=StructType(
        [
            _f("slot", I, False),
            _f("buckets", I, False),  # lake invariant: user-hash buckets of silver/gold
            _f("format_version", I, False),  # lake invariant: layout version
            _f("state", S, False),  # held | released
            _f("holder", S, False),  # unique id of the holding run (a fresh uuid per run)
            _f("command", S),  # what holds it: "run", "forget", ...
            _f("host", S),
            _f("pid", L),
            _f("acquired_ms", L),
            _f("expires_ms", L),  # a holder renews this; past it the lease is free
        ]
    ),
    partition_by=(),
    keys=("slot",),
    description="the lake's single-writer lease and its invariants (buckets, format version)",
)

ALL_TABLES: tuple[Table, ...] = (
    EVENTS,
    QUARANTINE,
    INGEST_RUNS,
    SESSIONS,
    SUGGESTIONS,
    ACCEPTANCE_METRICS,
    REFINEMENT_PAIRS,
    FEEDBACK,
    SUGGESTION_GRAPH,
    SUGGESTION_EDGES,
    OUTCOME_PREDICTIONS,
    OUTCOME_ESTIMATES,
    TYPED_PAIRS,
    STAGE_STATE,
    FORGOTTEN_USERS,
    SESSION_CHANGES,
    DOC_DAYS,
    TRACK_STATE,
    SUGGESTION_CHANGES,
    EVENT_INDEX,
)

TABLES_BY_NAME = {t.name: t for t in ALL_TABLES}
