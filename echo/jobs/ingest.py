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

from echo.config import LakeConfig, PipelineConfig
from echo.errors import InputError
from echo.jobs.common import config_json, emit_report, job_parser, open_job_lake, parse
from echo.lake.tables import EVENTS, FORGOTTEN_USERS, INGEST_RUNS, QUARANTINE
from echo.progress import Progress
from echo.sources import READ_ERROR, list_inputs, read_records
from echo.spark import spark_session
from echo.stages.ingest import (
    classify,
    count_outcomes,
    drop_forgotten_users,
    kept_event_dates,
    to_events,
    to_quarantine,
)

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

    from echo.lake import Lake

STAGE = "ingest"


def add_events_arg(parser: Any) -> None:
    parser.add_argument(
        "--events", nargs="+", required=True, metavar="PATH",
        help="input files or directories (*.jsonl, *.jsonl.gz, *.parquet), in ingestion order",
    )  # fmt: skip


def execute(
    spark: SparkSession,
    lake: Lake,
    events: Sequence[str],
    cfg: PipelineConfig,
    *,
    progress: Progress,
    config_text: str = "{}",
) -> dict[str, Any]:
    # every input is listed and probed (gzip header, Parquet footer), and every record is
    # read and classified, before the first table is created or written: an unreadable
    # input is an InputError with the lake as it was (lake.read of a missing table is empty)
    files = list_inputs(events)
    total = sum(f.size for f in files)
    progress.step(f"reading {len(files)} file(s), {total / 1e6:.1f} MB")
    started = datetime.datetime.now(datetime.timezone.utc)

    from echo.jobs.state import latest_run

    run_no = latest_run(lake) + 1
    records = read_records(spark, files, max_text_bytes=cfg.max_text_bytes)
    known_events = lake.read(EVENTS).select("event_id", "content_hash")
    known_q = lake.read(QUARANTINE).select("record_hash")
    classified = classify(records, known_events, known_q)
    if lake.exists(FORGOTTEN_USERS):
        classified = drop_forgotten_users(classified, lake.read(FORGOTTEN_USERS))
    classified = classified.persist(StorageLevel.MEMORY_AND_DISK)
    try:
        try:
            counts = count_outcomes(classified)
        except Exception as exc:  # a file vanished or became unreadable mid-read
            raise InputError(f"cannot read inputs: {_first_line(exc)}") from None
        by_reason = counts["quarantined_by_reason"]
        unreadable = int(by_reason.get(READ_ERROR, 0)) if isinstance(by_reason, dict) else 0
        if unreadable:
            raise InputError(_read_error_message(classified, unreadable))
        for t in (EVENTS, QUARANTINE, INGEST_RUNS):
            lake.ensure(t)
        progress.step("classified records", read=counts["records_read"], kept=counts["kept"],
                      duplicates=counts["duplicates"], quarantined=counts["quarantined"])  # fmt: skip
        info = {"echo.stage": STAGE, "echo.run_no": str(run_no)}
        if counts["quarantined"]:
            lake.append(QUARANTINE, to_quarantine(classified, run_no=run_no, ingested_at=started), info=info)
            progress.step("bronze/quarantine committed", version=lake.version(QUARANTINE))
        event_dates: list[str] = []
        if counts["kept"]:
            event_dates = kept_event_dates(classified)
            lake.append(EVENTS, to_events(classified, run_no=run_no, ingested_at=started), info=info)
            progress.step("bronze/events committed", version=lake.version(EVENTS))
    finally:
        classified.unpersist()

    finished = datetime.datetime.now(datetime.timezone.utc)
    run_row = (
        run_no, started, finished, json.dumps([f.uri for f in files]), counts["records_read"], counts["kept"],
        counts["duplicates"], counts["quarantined"], json.dumps(counts["quarantined_by_reason"]), config_text,
        json.dumps(event_dates),
    )  # fmt: skip
    lake.append(INGEST_RUNS, spark.createDataFrame([run_row], INGEST_RUNS.schema).coalesce(1), info=info)
    return {"run_no": run_no, "files": len(files), **counts}


def _read_error_message(classified: DataFrame, n: int) -> str:
    """The first unreadable input (in ingestion order), and how many more there are."""
    from pyspark.sql import functions as F

    first = (
        classified.where(F.col("q_reason") == READ_ERROR)
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
    with spark_session("echo-ingest", master=lake_cfg.master) as spark, open_job_lake(spark, lake_cfg, create=True, command=STAGE) as lake:
        report = execute(spark, lake, args.events, cfg, progress=progress, config_text=config_json(lake_cfg, cfg))
    emit_report(STAGE, report, args)

    return 0
