"""Incremental watermarks: the highest bronze ingest run each stage has processed.

An ingest run is *published* by its row in ``bronze/ingest_runs``, its last commit.
Rows of bronze/events and bronze/quarantine from a later run number belong to a run that
was interrupted before it published: no stage reads them (:func:`latest_run` is the
newest published run) and the next ingest deletes them before it writes
(:func:`unpublished_rows`, :mod:`echo.jobs.ingest`), then redoes that run in full.

A stage reads the users with events from runs above its watermark, recomputes only
them, commits its tables, and only then moves its watermark (one MERGE on
``_echo/stage_state``). A run that fails before that redoes the same work next time,
which is safe because every write is a replace of the same partitions.
"""

from __future__ import annotations

import datetime
import json
from typing import TYPE_CHECKING, Any

from pyspark.sql import functions as F

from echo.lake.tables import EVENT_INDEX, EVENTS, INGEST_RUNS, QUARANTINE, STAGE_STATE

if TYPE_CHECKING:
    from echo.lake import Lake


def watermark(lake: Lake, stage: str) -> int:
    rows = lake.read(STAGE_STATE).where(F.col("stage") == stage).select("run_no").collect()
    return int(rows[0][0]) if rows else 0


def latest_run(lake: Lake) -> int:
    """The newest published ingest run (its run record is committed; 0: none)."""
    row = lake.read(INGEST_RUNS).agg(F.max("run_no")).first()
    return int(row[0]) if row and row[0] is not None else 0


def unpublished_rows(lake: Lake, published: int) -> dict[str, int]:
    """Rows of bronze/events and bronze/quarantine above run ``published``: what an
    ingest run interrupted before its run record left behind."""
    out: dict[str, int] = {}
    for table in (EVENTS, QUARANTINE, EVENT_INDEX):
        n = lake.read(table).where(F.col("run_no") > published).count() if lake.exists(table) else 0
        if n:
            out[table.name] = n
    return out


def set_watermark(lake: Lake, stage: str, run_no: int, detail: dict[str, Any]) -> None:
    now = datetime.datetime.now(datetime.timezone.utc)
    df = lake.spark.createDataFrame(
        [(stage, int(run_no), now, json.dumps(detail, sort_keys=True, default=str))], STAGE_STATE.schema
    )
    lake.merge(STAGE_STATE, df, info={"echo.stage": stage, "echo.run_no": str(run_no)})
