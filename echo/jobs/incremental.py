"""Helpers of bounded incremental runs (docs/architecture.md, "Incremental runs").

A stage finds the events newer than its watermark through the ``event_date`` partitions
each ingest run recorded (bronze/ingest_runs.event_dates), reads only the day partitions
of the state those events can change, and rewrites only the partitions that hold
changed rows, copying their other rows as they are, in one Delta commit per table.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from pyspark.sql import functions as F

from echo.jobs.state import stage_row
from echo.lake.tables import EVENTS, INGEST_RUNS, Table

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame

    from echo.lake import Lake


def new_event_days(lake: Lake, since: int, up_to: int) -> list[datetime.date]:
    """The ``event_date`` partitions holding events of ingest runs ``(since, up_to]``."""
    if up_to <= since:
        return []
    days: set[datetime.date] = set()
    for run, dates in lake.small_rows(INGEST_RUNS, ("run_no", "event_dates")):
        if run is not None and since < run <= up_to:
            days.update(datetime.date.fromisoformat(d) for d in json.loads(dates or "[]"))
    return sorted(days)


def new_events(lake: Lake, since: int, up_to: int) -> DataFrame:
    """Bronze events of ingest runs ``(since, up_to]``, read from their days only."""
    return lake.read_partitions(EVENTS, new_event_days(lake, since, up_to)).where(
        (F.col("run_no") > since) & (F.col("run_no") <= up_to)
    )


def utc_date(ts_ms: Column | str) -> Column:
    col = F.col(ts_ms) if isinstance(ts_ms, str) else ts_ms
    return F.to_date(F.timestamp_millis(col))


def days_of_ranges(ranges: DataFrame, lo: Column, hi: Column) -> list[datetime.date]:
    """Every UTC date from ``date(lo)`` to ``date(hi)`` of each row of ``ranges`` (ms)."""
    pairs = ranges.select(utc_date(lo).alias("a"), utc_date(hi).alias("b")).distinct().collect()
    return expand_days((r[0], r[1]) for r in pairs)


def expand_days(pairs: Iterable[tuple[datetime.date, datetime.date]]) -> list[datetime.date]:
    out: set[datetime.date] = set()
    one = datetime.timedelta(days=1)
    for a, b in pairs:
        d = a
        while d <= b:
            out.add(d)
            d += one
    return sorted(out)


def replace_rows(
    lake: Lake,
    table: Table,
    new_rows: DataFrame,
    removed: DataFrame,
    partitions: Iterable[Any],
    *,
    keys: Sequence[str] | None = None,
    info: dict[str, str] | None = None,
) -> list[Any]:
    """In one commit: drop the rows of ``table`` whose keys are in ``removed`` (which all
    lie in ``partitions``), add ``new_rows`` (whose partitions must be in ``partitions``
    too), and carry every other row of those partitions as it is. Returns the partitions."""
    parts = sorted(set(partitions))
    if not parts:
        return []
    keys = list(keys or table.keys)
    carried = lake.read_partitions(table, parts).join(removed.select(*keys).distinct(), on=keys, how="left_anti")
    rows = carried.select(*table.columns).unionByName(new_rows.select(*table.columns))
    lake.replace_partitions(table, rows.repartition(table.partition_by[0]), parts, info=info)
    return parts


def rewrite_users(
    lake: Lake, table: Table, new_rows: DataFrame, users: DataFrame, *, info: dict[str, str] | None = None
) -> list[int]:
    """Replace every row of ``users`` in ``table`` with ``new_rows`` in one commit, for
    the tables partitioned by ``user_bucket`` (the graph stage's; per user, not bounded
    by day: docs/graph.md).

    Touches only the ``user_bucket`` partitions of those users; other users' rows in
    those partitions are carried over unchanged. Returns the buckets rewritten.
    """
    if table.partition_by != ("user_bucket",):
        raise ValueError(f"{table.name} is not partitioned by user_bucket")
    buckets = sorted(int(r[0]) for r in users.select("user_bucket").distinct().collect())
    if not buckets:
        return []
    old = lake.read(table).where(F.col("user_bucket").isin(buckets))
    carried = old.join(F.broadcast(users.select("user_id")), on="user_id", how="left_anti")
    rows = carried.select(*table.columns).unionByName(new_rows.select(*table.columns))
    lake.replace_partitions(table, rows.repartition("user_bucket"), buckets, info=info)
    return buckets


def stage_detail(lake: Lake, stage: str) -> dict[str, Any]:
    """The JSON detail a stage recorded with its watermark ({} when none)."""
    row = stage_row(lake, stage)
    if row is None or not row[1]:
        return {}
    try:
        detail = json.loads(row[1])
    except ValueError:
        return {}
    return detail if isinstance(detail, dict) else {}


def record_changes(
    lake: Lake, table: Table, changes: DataFrame, *, since: int, up_to: int, info: dict[str, str]
) -> None:
    """Record a run's changed keys in a per-run state table (partitioned by ``run_no``):
    kept with what an interrupted attempt of this run recorded (perhaps under a lower
    up-to run, any of ``since+1 .. up_to``), all under ``up_to``. Materialized before the
    partitions it reads are replaced."""
    runs = list(range(since + 1, up_to + 1))
    cols = [c for c in table.columns if c != "run_no"]
    earlier = lake.read_partitions(table, runs).select(*cols)
    out = (
        changes.select(*cols).unionByName(earlier).distinct()
        .withColumn("run_no", F.lit(up_to).cast("long")).coalesce(1).cache()
    )  # fmt: skip
    out.count()
    lake.replace_partitions(table, out, runs, info=info)
    out.unpersist()


def stored_config_sha(lake: Lake, stage: str) -> str | None:
    """The ``config_sha`` a stage recorded with its watermark (None when none)."""
    sha = stage_detail(lake, stage).get("config_sha")
    return sha if isinstance(sha, str) else None


#: stage_state detail key: the settings that shaped a stage's stored rows
SETTINGS = "settings"


def fixed_settings(lake: Lake, stage: str, settings: dict[str, Any]) -> dict[str, Any]:
    """Refuse a run whose content settings differ from those the stage's stored rows were
    built with (a bounded run redoes only what new events touch, so older rows would keep
    the old settings); returns the watermark detail entry recording them."""
    stored = stage_detail(lake, stage).get(SETTINGS)
    if isinstance(stored, dict) and stored != settings:

        def flags(d: dict[str, Any]) -> str:
            return " ".join(f"--{k.replace('_', '-')} {d.get(k)}" for k in sorted(settings))

        from echo.errors import LakeError

        raise LakeError(
            f"lake {lake.root}: {stage} built it with {flags(stored)}; this run asks for {flags(settings)} "
            "(these settings are fixed for a lake: pass the lake's values)"
        )
    return {SETTINGS: settings}
