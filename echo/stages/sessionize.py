"""Sessions (CONTRACT.md section 2): per user, split where the inactivity gap is
strictly greater than ``gap_s``. Pure DataFrame transforms."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pyspark.sql import Window
from pyspark.sql import functions as F

from echo.lake.tables import SESSIONS

if TYPE_CHECKING:
    from pyspark.sql import DataFrame


def _session_numbers(events: DataFrame, *, gap_s: int) -> DataFrame:
    """Add ``_session_no`` (1, 2, ... per user): one sort per user by ``ts_ms``, a ``lag``
    and a running sum (both O(n) window frames).

    The contract orders a user's events by ``(ts_ms, event_id)``; the sort leaves
    ``event_id`` out because the order of events with equal ``ts_ms`` cannot change a
    session: the first of them is compared with the last earlier ``ts_ms`` whichever it
    is, the others follow it at a gap of 0, so all of them get the same number."""
    by_user = Window.partitionBy("user_id").orderBy("ts_ms")
    prev_ts = F.lag("ts_ms").over(by_user)
    return events.withColumn(
        "_new", F.when(prev_ts.isNull() | ((F.col("ts_ms") - prev_ts) > F.lit(gap_s * 1000)), 1).otherwise(0)
    ).withColumn("_session_no", F.sum("_new").over(by_user.rowsBetween(Window.unboundedPreceding, 0)))


def assign_sessions(events: DataFrame, *, gap_s: int) -> DataFrame:
    """Add ``session_id``, ``session_start_ts_ms`` and ``session_end_ts_ms`` to each event.

    Events of a user are ordered by ``ts_ms`` then ``event_id``; a new session starts at
    the first event and after every gap ``> gap_s`` seconds. ``session_id`` is
    ``"{user_id}/{start_ts_ms}"``.
    """
    starts = _session_numbers(events, gap_s=gap_s)
    by_session = Window.partitionBy("user_id", "_session_no")
    out = (
        starts.withColumn("session_start_ts_ms", F.min("ts_ms").over(by_session))
        .withColumn("session_end_ts_ms", F.max("ts_ms").over(by_session))
        .withColumn("session_id", F.concat_ws("/", F.col("user_id"), F.col("session_start_ts_ms").cast("string")))
    )
    return out.drop("_new", "_session_no")


def sessionize(events: DataFrame, *, gap_s: int, buckets: int) -> DataFrame:
    """silver/sessions rows of the given events' users.

    Native Spark only: the session numbers (one window sort per user), then one
    aggregation per session (``size(collect_set)`` counts documents without the extra
    expand-and-aggregate pass of ``countDistinct``)."""
    from echo.lake.partitioning import user_bucket

    numbered = _session_numbers(events.select("user_id", "ts_ms", "doc_id"), gap_s=gap_s)
    s = (
        numbered.groupBy("user_id", "_session_no")
        .agg(
            F.min("ts_ms").alias("start_ts_ms"),
            F.max("ts_ms").alias("end_ts_ms"),
            F.count(F.lit(1)).alias("n_events"),
            F.size(F.collect_set("doc_id")).cast("long").alias("n_docs"),
        )
        .withColumn("session_id", F.concat_ws("/", F.col("user_id"), F.col("start_ts_ms").cast("string")))
        .withColumn("duration_s", (F.col("end_ts_ms") - F.col("start_ts_ms")) / F.lit(1000.0))
        .withColumn("user_bucket", user_bucket("user_id", buckets))
        .withColumn("start_date", F.to_date(F.timestamp_millis(F.col("start_ts_ms"))))
    )
    return s.select(*SESSIONS.columns)


def dirty_intervals(new: DataFrame, sessions: DataFrame, *, gap_s: int) -> tuple[DataFrame, DataFrame]:
    """The intervals whose sessions new events can change, and the sessions they replace.

    ``new``: ``user_id, ts_ms`` of new events. ``sessions``: existing sessions
    (``user_id, session_id, start_ts_ms, end_ts_ms``), at least every one within
    ``gap_s`` of a new event. A new event ``e`` touches a session ``S`` when
    ``S.start - gap <= e.ts <= S.end + gap``; its span is ``[min(e.ts, starts of the
    sessions it touches), max(e.ts, their ends)]``; a user's spans chained by gaps
    ``<= gap`` merge into one interval. Returns ``(intervals[user_id, lo_ts_ms,
    hi_ts_ms], touched[session_id, start_ts_ms])``: the sessions of the user's events inside an
    interval are the sessions of those events alone; every session outside all intervals
    is unchanged (docs/architecture.md gives the argument).
    """
    gap = F.lit(gap_s * 1000)
    ev = new.select("user_id", "ts_ms").distinct()
    s = sessions.select(
        F.col("user_id").alias("_u"), "session_id", F.col("start_ts_ms").alias("_s"), F.col("end_ts_ms").alias("_e")
    )
    hit = ev.join(
        s, (F.col("user_id") == F.col("_u")) & (F.col("_s") - gap <= F.col("ts_ms")) & (F.col("ts_ms") <= F.col("_e") + gap)
    )
    touched = hit.select("session_id", F.col("_s").alias("start_ts_ms")).distinct()
    spans = (
        ev.join(hit.select("user_id", "ts_ms", "_s", "_e"), on=["user_id", "ts_ms"], how="left")
        .groupBy("user_id", "ts_ms")
        .agg(
            F.least(F.col("ts_ms"), F.coalesce(F.min("_s"), F.col("ts_ms"))).alias("lo"),
            F.greatest(F.col("ts_ms"), F.coalesce(F.max("_e"), F.col("ts_ms"))).alias("hi"),
        )
    )
    by_user = Window.partitionBy("user_id").orderBy("lo", "hi")
    reach = F.max("hi").over(by_user.rowsBetween(Window.unboundedPreceding, -1))
    grouped = spans.withColumn(
        "_new", F.when(reach.isNull() | (F.col("lo") - reach > gap), 1).otherwise(0)
    ).withColumn("_grp", F.sum("_new").over(by_user.rowsBetween(Window.unboundedPreceding, 0)))
    intervals = grouped.groupBy("user_id", "_grp").agg(
        F.min("lo").alias("lo_ts_ms"), F.max("hi").alias("hi_ts_ms")
    )
    return intervals.select("user_id", "lo_ts_ms", "hi_ts_ms"), touched


def changed_ranges(old: DataFrame, touched: DataFrame, sessions: DataFrame) -> DataFrame:
    """``user_id, lo_ts_ms, hi_ts_ms``: the time range of every session that changed, the
    touched stored sessions that are not among the recomputed ones (same id and end) and
    the recomputed ones that are new. An event whose session id or end changed lies in
    its old session's range or its new one's; an event of a session that came back the
    same (a late event inside it) keeps both, and track need not look at it."""
    cols = ["user_id", "session_id", "start_ts_ms", "end_ts_ms"]
    before = old.join(touched.select("session_id"), "session_id", "left_semi").select(*cols)
    after = sessions.select(*cols)
    same = ["session_id", "end_ts_ms"]
    changed = before.join(after, same, "left_anti").unionByName(after.join(before, same, "left_anti"))
    return changed.select("user_id", F.col("start_ts_ms").alias("lo_ts_ms"), F.col("end_ts_ms").alias("hi_ts_ms"))
