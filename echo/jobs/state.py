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


def stage_row(lake: Lake, stage: str) -> tuple[int, str | None] | None:
    """``(run_no, detail)`` of a stage's ``_echo/stage_state`` row (None: no row; the
    table holds one row per stage)."""
    rows = [(int(run), detail) for name, run, detail in lake.small_rows(STAGE_STATE, ("stage", "run_no", "detail"))
            if name == stage]  # fmt: skip
    return rows[0] if rows else None


def watermark(lake: Lake, stage: str) -> int:
    row = stage_row(lake, stage)
    return 0 if row is None else row[0]


def latest_run(lake: Lake) -> int:
    """The newest published ingest run (its run record is committed; 0: none)."""
    runs = [run for (run,) in lake.small_rows(INGEST_RUNS, ("run_no",)) if run is not None]
    return int(max(runs)) if runs else 0


#: the ``_echo/stage_state`` row of the newest ingest run that began writing bronze
WRITING = "ingest:writing"


def _started(lake: Lake) -> int | None:
    row = stage_row(lake, WRITING)
    return None if row is None else row[0]


def begin_writing(lake: Lake, run_no: int) -> None:
    """Record that ingest run ``run_no`` is about to write bronze rows (before its first
    one): until it publishes, the next ingest looks for its rows."""
    if _started(lake) != run_no:
        set_watermark(lake, WRITING, run_no, {})


def abandon_writing(lake: Lake, published: int) -> None:
    """After a run's rows were deleted (an input changed while it ran): the newest run
    that began writing is ``published`` again, so the lake is as it was before the run."""
    started = _started(lake)
    if started is not None and started > published:
        set_watermark(lake, WRITING, published, {})


def unpublished_rows(lake: Lake, published: int) -> dict[str, int]:
    """Rows of bronze/events and bronze/quarantine above run ``published``: what an
    ingest run interrupted before its run record left behind.

    Every run records that it began writing before its first bronze row
    (:func:`begin_writing`), so when the newest run that began is published there is
    nothing to look for and no table is read (a lake's age does not add to the check);
    otherwise, or when no run has recorded it yet, the run_no columns are scanned."""
    started = _started(lake)
    if started is not None and started <= published:
        return {}
    out: dict[str, int] = {}
    for table in (EVENTS, QUARANTINE, EVENT_INDEX):
        n = lake.read(table).where(F.col("run_no") > published).count() if lake.exists(table) else 0
        if n:
            out[table.name] = n
    return out


def set_watermark(lake: Lake, stage: str, run_no: int, detail: dict[str, Any]) -> None:
    now = datetime.datetime.now(datetime.timezone.utc)
    row = (stage, int(run_no), now, json.dumps(detail, sort_keys=True, default=str))
    lake.upsert_rows(STAGE_STATE, [row], info={"echo.stage": stage, "echo.run_no": str(run_no)})
