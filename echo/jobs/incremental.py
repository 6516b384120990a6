"""Incremental recomputation by user: only users with new events are recomputed.

Documents belong to one user and sessions are per user, so the user is the unit of
recomputation for sessions, suggestions and pairs. Silver and gold tables are
partitioned by ``user_bucket`` (a stable hash of ``user_id``); a run rewrites only the
buckets holding affected users, copying the other users' rows of those buckets as they
are, in one Delta commit per table (copy-on-write, as Delta's MERGE does per file).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pyspark.sql import functions as F

from echo.jobs.state import latest_run, watermark
from echo.lake.partitioning import user_bucket
from echo.lake.tables import EVENTS, Table

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

    from echo.lake import Lake


def affected_users(lake: Lake, stage: str, buckets: int) -> tuple[DataFrame, int, int]:
    """Users with bronze events newer than the stage's watermark.

    Returns ``(users[user_id, user_bucket], since_run, up_to_run)``. Parquet min/max
    statistics on ``run_no`` let the scan skip files of older runs.
    """
    since = watermark(lake, stage)
    up_to = latest_run(lake)
    users = (
        lake.read(EVENTS)
        .where((F.col("run_no") > since) & (F.col("run_no") <= up_to))
        .select("user_id")
        .distinct()
        .withColumn("user_bucket", user_bucket("user_id", buckets))
    )
    return users, since, up_to


def events_of(lake: Lake, users: DataFrame, up_to_run: int) -> DataFrame:
    """All bronze events (every run up to ``up_to_run``) of the given users."""
    return (
        lake.read(EVENTS)
        .where(F.col("run_no") <= up_to_run)
        .join(F.broadcast(users.select("user_id")), on="user_id", how="left_semi")
    )


def rewrite_users(
    lake: Lake, table: Table, new_rows: DataFrame, users: DataFrame, *, info: dict[str, str] | None = None
) -> list[int]:
    """Replace every row of ``users`` in ``table`` with ``new_rows`` in one commit.

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
