"""ingest: events (JSON Lines or Parquet) -> bronze/events, bronze/quarantine.

    python -m echo ingest --events PATH [PATH...] --lake DIR
    spark-submit jobs/ingest.py --events PATH [PATH...] --lake DIR
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from pyspark import StorageLevel
from pyspark.sql import functions as F

from echo.config import LakeConfig, PipelineConfig
from echo.errors import InputError
from echo.jobs.common import config_json, emit_report, job_parser, open_job_lake, parse
from echo.lake.tables import (
    EVENT_INDEX,
    EVENT_INDEX_COMPACT,
    EVENTS,
    FORGOTTEN_USERS,
    INGEST_RUNS,
    QUARANTINE,
)
from echo.progress import Progress
from echo.sources import (
    READ_ERROR,
    InputFile,
    changed_inputs,
    list_inputs,
    read_lines,
    read_records,
)
from echo.spark import session_conf, spark_session
from echo.stages.ingest import (
    KEY_COLUMNS,
    batch_ids,
    classify,
    count_outcomes,
    drop_forgotten_users,
    exceptions,
    index_layout,
    kept_event_dates,
    kept_ids,
    kept_records,
    needs_raw_bytes,
    quarantined_records,
    to_event_index,
    to_events,
    to_quarantine,
    with_raw_bytes,
)
from echo.stages.validate import CONFLICTING_DUPLICATE

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

    from echo.lake import Lake

STAGE = "ingest"

#: the records that are not kept (duplicates, quarantined) are broadcast to the tasks
#: that write bronze when there are at most this many (~50 B each); more are joined to
#: the records by a sort-merge join (which shuffles the records: a batch that is mostly
#: duplicates, such as a re-ingested folder)
BROADCAST_EXCEPTIONS = 500_000


def add_events_arg(parser: Any) -> None:
    parser.add_argument(
        "--events", nargs="+", required=True, metavar="PATH",
        help="input files or directories (*.jsonl, *.jsonl.gz, *.parquet), in ingestion order",
    )  # fmt: skip


#: Ingest's caches (the parsed records, their keys, the classification) are on local
#: disk and read back once or twice: Spark's columnar encodings of their batches cost
#: more CPU than the disk bytes they save (the records' cache filled in ~25 % less time
#: at 1.1M records, read back as fast; docs/benchmarks.md, "Ingest's caches unencoded").
#: Set for the run only; the session's own value is restored after it.
CACHE_CONF = {"spark.sql.inMemoryColumnarStorage.compressed": "false"}


def execute(
    spark: SparkSession,
    lake: Lake,
    events: Sequence[str],
    cfg: PipelineConfig,
    *,
    progress: Progress,
    config_text: str = "{}",
) -> dict[str, Any]:
    with session_conf(spark, CACHE_CONF):
        return _execute(spark, lake, events, cfg, progress=progress, config_text=config_text)


def _execute(
    spark: SparkSession,
    lake: Lake,
    events: Sequence[str],
    cfg: PipelineConfig,
    *,
    progress: Progress,
    config_text: str,
) -> dict[str, Any]:
    # every input is listed and probed (gzip header, Parquet footer), and every record is
    # read and classified, before the first table is created or written: an unreadable
    # input is an InputError with the lake as it was (lake.read of a missing table is empty)
    files = list_inputs(events)
    total = sum(f.size for f in files)
    progress.step(f"reading {len(files)} file(s), {total / 1e6:.1f} MB")
    started = datetime.datetime.now(datetime.timezone.utc)

    from echo.jobs.state import abandon_writing, begin_writing, latest_run, unpublished_rows

    # Only published runs count (see echo.jobs.state): the rows an interrupted run left
    # behind are ignored here and deleted below, before this run writes; this run then
    # redoes that run in full, with its number, so retries end as one clean run would.
    published = latest_run(lake)
    run_no = published + 1
    # The records are parsed once and kept on local disk, as is everything derived from
    # them (the heap holds none of a batch, whatever its size; reading these caches back
    # cost no more than holding them in memory, docs/benchmarks.md). Only their narrow
    # key columns are classified (windows and joins by event_id); the outcome goes back
    # to the full records by (path_idx, pos) as the short list of records that are not
    # kept, broadcast when it is short, so the wide columns are never shuffled.
    records = read_records(spark, files, max_text_bytes=cfg.max_text_bytes).persist(StorageLevel.DISK_ONLY)
    keys = records.select(*KEY_COLUMNS).persist(StorageLevel.DISK_ONLY)
    ids = batch_ids(keys).persist(StorageLevel.DISK_ONLY)
    cached: list[DataFrame] = []  # unpersisted at the end
    again: DataFrame | None = None
    try:
        try:  # one pass parses the inputs and fills both caches (records on disk, keys)
            keys.count()
            known_events = earlier_copies(lake, ids, published)
        except Exception as exc:  # a file vanished or became unreadable mid-read
            raise InputError(f"cannot read inputs: {_first_line(exc)}") from None
        known_q = lake.read(QUARANTINE).where(F.col("run_no") <= published).select("record_hash")
        classified = classify(keys, known_events, known_q).persist(StorageLevel.DISK_ONLY)
        cached.append(classified)
        try:
            counts = count_outcomes(classified)
            # the records carry raw bytes for refused records only: the lines of the valid
            # records quarantined after all (conflicting copies) are read again
            conflicting = counts["quarantined_by_reason"].get(CONFLICTING_DUPLICATE, 0)
            few_again = conflicting <= BROADCAST_EXCEPTIONS
            forgotten = lake.exists(FORGOTTEN_USERS)
            if conflicting:
                wanted = needs_raw_bytes(classified, copies=forgotten, few=few_again)
                again = read_lines(files, wanted, tasks=None if few_again else len(files)).persist(StorageLevel.DISK_ONLY)
                cached.append(again)
                again.count()
            if forgotten:
                raws = records if again is None else with_raw_bytes(records, again, few=few_again)
                raws = raws.select("content_hash", "raw", "raw_bytes")
                classified = drop_forgotten_users(classified, lake.read(FORGOTTEN_USERS), raws)
                classified = classified.persist(StorageLevel.DISK_ONLY)
                cached.append(classified)
                counts = count_outcomes(classified)
        except Exception as exc:  # a file vanished or became unreadable mid-read
            raise InputError(f"cannot read inputs: {_first_line(exc)}") from None
        finally:
            ids.unpersist()
            keys.unpersist()
        unreadable = counts["quarantined_by_reason"].get(READ_ERROR, 0)
        if unreadable:
            raise InputError(_read_error_message(records, unreadable))
        _check_unchanged(files)
        leftover = unpublished_rows(lake, published)
        if leftover:
            _roll_back(lake, published)
            progress.step(f"removed the rows of run {run_no}, interrupted before it was published",
                          **{k.replace("/", "_"): v for k, v in leftover.items()})  # fmt: skip
        for t in (EVENTS, QUARANTINE, INGEST_RUNS, EVENT_INDEX):
            lake.ensure(t)
        if counts["kept"] or counts["quarantined"]:
            begin_writing(lake, run_no)
        compacted = compact_event_index(lake)
        if compacted:
            progress.step("_echo/event_index compacted", buckets=len(compacted))
        progress.step("classified records", read=counts["records_read"], kept=counts["kept"],
                      duplicates=counts["duplicates"], quarantined=counts["quarantined"])  # fmt: skip
        info = {"echo.stage": STAGE, "echo.run_no": str(run_no)}
        excepted = exceptions(classified)
        not_kept = counts["records_read"] - counts["kept"]
        few = not_kept <= BROADCAST_EXCEPTIONS
        excepted = F.broadcast(excepted) if few else excepted.hint("merge")
        if counts["quarantined"]:
            refused = quarantined_records(records, excepted)
            if again is not None:
                refused = with_raw_bytes(refused, again, few=few_again)
            lake.append(QUARANTINE, to_quarantine(refused, run_no=run_no, ingested_at=started), info=info)
            progress.step("bronze/quarantine committed", version=lake.version(QUARANTINE))
        event_dates: list[str] = []
        if counts["kept"]:
            event_dates = kept_event_dates(classified)
            kept = kept_records(records, excepted)
            lake.append(EVENTS, to_events(kept, run_no=run_no, ingested_at=started), info=info)
            progress.step("bronze/events committed", version=lake.version(EVENTS))
            lake.append(EVENT_INDEX, to_event_index(kept_ids(classified, run_no=run_no)), info=info)
    finally:
        ids.unpersist()
        keys.unpersist()
        for df in cached:
            df.unpersist()
        records.unpersist()

    try:  # an input that changed after it was read: undo this run, publish nothing
        _check_unchanged(files)
    except InputError:
        _roll_back(lake, published)
        abandon_writing(lake, published)
        raise
    finished = datetime.datetime.now(datetime.timezone.utc)
    run_row = (
        run_no, started, finished, json.dumps([f.uri for f in files]), counts["records_read"], counts["kept"],
        counts["duplicates"], counts["quarantined"], json.dumps(counts["quarantined_by_reason"]), config_text,
        json.dumps(event_dates),
    )  # fmt: skip
    lake.append_rows(INGEST_RUNS, [run_row], info=info)
    report: dict[str, Any] = {"run_no": run_no, "files": len(files), **counts}
    if leftover:
        report["interrupted_run_redone"] = {"run_no": run_no, "rows_removed": leftover}
    return report


def earlier_copies(lake: Lake, ids: DataFrame, published: int) -> DataFrame:
    """``event_id, content_hash`` of the bronze events (published runs) that share an
    ``event_id`` with the batch (``ids``: :func:`~echo.stages.ingest.batch_ids`).

    Bounded by the batch, not the lake's age: the index buckets the batch's ids fall in
    give the days holding an event with a matching id hash, and only those days of
    bronze/events are read (an identical copy has the same ``ts_ms``, so the same day; a
    conflicting copy's day comes from the index). A hash collision only adds a day to
    read; the join on the full ``event_id`` decides, so the result equals a scan of every
    event ever kept (docs/architecture.md, "Incremental runs")."""
    if published == 0:  # no published run: nothing kept yet (an interrupted run's rows do not count)
        return lake.empty(EVENTS).select("event_id", "content_hash")
    buckets = sorted(int(r[0]) for r in ids.select("id_bucket").distinct().collect())
    hits = (
        lake.read_partitions(EVENT_INDEX, buckets).where(F.col("run_no") <= published)
        .join(ids.select("id_bucket", "id_key"), ["id_bucket", "id_key"], "left_semi")
    )  # fmt: skip
    days = sorted(r[0] for r in hits.select("event_date").distinct().collect())
    return (
        lake.read_partitions(EVENTS, days).where(F.col("run_no") <= published)
        .select("event_id", "content_hash").join(ids.select("event_id"), "event_id", "left_semi")
    )  # fmt: skip


def _check_unchanged(files: Sequence[InputFile]) -> None:
    changed = changed_inputs(files)
    if changed:
        more = f" (and {len(changed) - 1} more)" if len(changed) > 1 else ""
        raise InputError(
            f"input changed while it was read: {changed[0]}{more}; nothing was ingested, run again "
            "once the inputs are complete"
        )


def compact_event_index(lake: Lake) -> list[int]:
    """Rewrite the most crowded buckets of _echo/event_index into one file each (at most
    :data:`EVENT_INDEX_COMPACT` buckets, those with at least that many files); one commit,
    the same rows. Keeps the files a duplicate check opens bounded (every run adds one per
    bucket) at a cost of at most an eighth of the index rewritten per run."""
    counts = lake.files_per_partition(EVENT_INDEX)
    crowded = sorted((-n, int(b)) for b, n in counts.items() if n >= EVENT_INDEX_COMPACT)
    buckets = sorted(b for _, b in crowded[:EVENT_INDEX_COMPACT])
    if buckets:
        rows = index_layout(lake.read_partitions(EVENT_INDEX, buckets))
        lake.replace_partitions(EVENT_INDEX, rows, buckets, info={"echo.stage": STAGE, "echo.op": "compact"})
    return buckets


def _roll_back(lake: Lake, published: int) -> None:
    """Delete the bronze rows of runs after ``published`` (one commit per table)."""
    for table in (QUARANTINE, EVENTS, EVENT_INDEX):
        if lake.exists(table):
            lake.delete(table, f"run_no > {int(published)}")


def _read_error_message(records: DataFrame, n: int) -> str:
    """The first unreadable input (in ingestion order), and how many more there are."""
    first = (
        records.where(F.col("q_reason") == READ_ERROR)
        .orderBy("path_idx", "pos")
        .select("q_detail")
        .first()
    )
    message = str(first[0]) if first is not None else "cannot read inputs"
    return message + (f" (and {n - 1} more unreadable input(s))" if n > 1 else "")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    for line in text.splitlines():
        if "Error" in line or "error" in line:
            return line.strip()[:300]
    return text.splitlines()[0][:300] if text else type(exc).__name__


def main(argv: Sequence[str] | None = None) -> int:
    parser = job_parser("echo-pipeline ingest", __doc__ or "", PipelineConfig)
    add_events_arg(parser)
    args, (lake_cfg, cfg) = parse(parser, argv, PipelineConfig)
    assert isinstance(lake_cfg, LakeConfig)
    progress = Progress(STAGE, quiet=args.quiet)
    list_inputs(args.events)  # fail fast, before a session starts, on missing inputs
    with spark_session("echo-ingest", master=lake_cfg.master) as spark, open_job_lake(spark, lake_cfg, create=True, command=STAGE, quiet=args.quiet) as lake:
        report = execute(spark, lake, args.events, cfg, progress=progress, config_text=config_json(lake_cfg, cfg))
    emit_report(STAGE, report, args)

    return 0
