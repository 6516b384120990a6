"""Incremental watermarks: the highest bronze ingest run each stage has processed.

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

from echo.lake.tables import EVENTS, INGEST_RUNS, STAGE_STATE

if TYPE_CHECKING:
    from echo.lake import Lake


def watermark(lake: Lake, stage: str) -> int:
    rows = lake.read(STAGE_STATE).where(F.col("stage") == stage).select("run_no").collect()
    return int(rows[0][0]) if rows else 0


def latest_run(lake: Lake) -> int:
    """The newest ingest run whose events are in bronze."""
    row = lake.read(INGEST_RUNS).agg(F.max("run_no")).first()
    runs = int(row[0]) if row and row[0] is not None else 0
    ev = lake.read(EVENTS).agg(F.max("run_no")).first()
    return max(runs, int(ev[0]) if ev and ev[0] is not None else 0)


def set_watermark(lake: Lake, stage: str, run_no: int, detail: dict[str, Any]) -> None:
    now = datetime.datetime.now(datetime.timezone.utc)
    df = lake.spark.createDataFrame(
        [(stage, int(run_no), now, json.dumps(detail, sort_keys=True, default=str))], STAGE_STATE.schema
    )
    lake.merge(STAGE_STATE, df, info={"echo.stage": stage, "echo.run_no": str(run_no)})
