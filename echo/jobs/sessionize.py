"""sessionize: bronze/events -> silver/sessions (only the sessions new events can change).

    python -m echo sessionize --lake DIR [--session-gap-s 1800]
    spark-submit jobs/sessionize.py --lake DIR

Bounded: the new events are read from the days their ingest runs wrote; the sessions
they can touch from the ``start_date`` partitions within ``session_gap_s`` plus the
longest session so far; each user's dirty intervals
(:func:`echo.stages.sessionize.dirty_intervals`) are re-sessionized from the bronze
days they cover; only the ``start_date`` partitions of removed or new sessions are
rewritten. The intervals are recorded in ``_echo/session_changes`` for ``track``. A first
run (nothing processed yet) sessionizes all the events it reads directly and records no
changes (track's first run, the only one that could read them, replays every document).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from pyspark.sql import functions as F

from echo.config import PipelineConfig
from echo.jobs.common import stage_main
from echo.jobs.incremental import (
    days_of_ranges,
    fixed_settings,
    new_events,
    record_changes,
    replace_rows,
    stage_detail,
    utc_date,
)
from echo.jobs.state import latest_run, set_watermark, watermark
from echo.lake.tables import EVENTS, SESSION_CHANGES, SESSIONS
from echo.progress import Progress
from echo.stages.sessionize import changed_ranges, dirty_intervals, sessionize

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

    from echo.config import LakeConfig
    from echo.lake import Lake

STAGE = "sessionize"
#: stage_state detail key: an upper bound of every session's end - start (ms)
MAX_SESSION_MS = "max_session_ms"


def max_session_ms(lake: Lake) -> int:
    return int(stage_detail(lake, STAGE).get(MAX_SESSION_MS) or 0)


def events_in(lake: Lake, intervals: DataFrame, up_to: int) -> DataFrame:
    """Bronze events (runs <= ``up_to``) of each interval's user with ``lo <= ts <= hi``,
    read from the days the intervals cover."""
    days = days_of_ranges(intervals, F.col("lo_ts_ms"), F.col("hi_ts_ms"))
    iv = intervals.select(F.col("user_id").alias("_iu"), "lo_ts_ms", "hi_ts_ms")
    ev = lake.read_partitions(EVENTS, days).where(F.col("run_no") <= up_to)
    cond = (F.col("user_id") == F.col("_iu")) & F.col("ts_ms").between(F.col("lo_ts_ms"), F.col("hi_ts_ms"))
    return ev.join(iv, cond, "left_semi")


def execute(
    spark: SparkSession, lake: Lake, lake_cfg: LakeConfig, cfg: PipelineConfig, *, progress: Progress
) -> dict[str, Any]:
    lake.ensure(SESSIONS)
    lake.ensure(SESSION_CHANGES)
    fixed = fixed_settings(lake, STAGE, {"session_gap_s": cfg.session_gap_s})
    since, up_to = watermark(lake, STAGE), latest_run(lake)
    longest = max_session_ms(lake)
    gap_ms = cfg.session_gap_s * 1000
    # a first run's new events are all the events, read once by the sessionize itself
    # (counting them reads only run_no); a later run's are read again by the day ranges
    # and the intervals, so they are cached
    columns = ("user_id", "ts_ms", "doc_id") if since == 0 else ("user_id", "ts_ms")
    new = new_events(lake, since, up_to).select(*columns)
    if since:
        new = new.cache()
    try:
        n_new = new.count()
        progress.step(f"runs {since + 1}..{up_to}: new events", events=n_new)
        if n_new == 0:
            set_watermark(lake, STAGE, max(up_to, since), {"users": 0, MAX_SESSION_MS: longest, **fixed})
            return {"run_no": up_to, "users": 0, "sessions_written": 0}
        if since == 0:
            # nothing processed yet: every event is new, so the dirty intervals would be
            # the sessions themselves; sessionize them directly, replacing whatever an
            # interrupted first attempt stored
            old = lake.read(SESSIONS) if lake.files_per_partition(SESSIONS) else lake.empty(SESSIONS)
            touched = old.select("session_id", "start_ts_ms").cache()
            intervals = new.select("user_id").distinct().cache()
            events = new
        else:
            # sessions a new event can touch start within [ts - gap - longest, ts + gap]
            near = days_of_ranges(new, F.col("ts_ms") - gap_ms - longest, F.col("ts_ms") + gap_ms)
            old = lake.read_partitions(SESSIONS, near)
            intervals, touched = dirty_intervals(new, old, gap_s=cfg.session_gap_s)
            intervals, touched = intervals.cache(), touched.cache()
            events = events_in(lake, intervals, up_to)
        sessions = sessionize(events, gap_s=cfg.session_gap_s, buckets=lake.buckets).cache()
        # one pass: every user of an interval has a session (its new event's), so the
        # users sessionized are the intervals' users
        stats = sessions.agg(F.count(F.lit(1)), F.max(F.col("end_ts_ms") - F.col("start_ts_ms")),
                             F.countDistinct("user_id"), F.collect_set("start_date")).first()  # fmt: skip
        n_sessions, n_users = (int(stats[0]), int(stats[2])) if stats else (0, 0)
        longest = max(longest, int(stats[1] or 0) if stats else 0)
        parts = {r[0] for r in touched.select(utc_date("start_ts_ms")).distinct().collect()}
        parts |= set(stats[3]) if stats else set()
        info = {"echo.stage": STAGE, "echo.run_no": str(up_to)}
        # Before the sessions commit (a rerun after it would compare the new sessions
        # with themselves; record_changes keeps what a first attempt recorded). A first
        # run records none: the only track run that could read them is track's first,
        # which replays every document whole and reads no session changes.
        if since:
            record_changes(lake, SESSION_CHANGES, changed_ranges(old, touched, sessions), since=since, up_to=up_to,
                           info=info)  # fmt: skip
        replace_rows(lake, SESSIONS, sessions, touched, parts, info=info)
        progress.step("silver/sessions committed", sessions=n_sessions, days=len(parts),
                      version=lake.version(SESSIONS))  # fmt: skip
        for df in (intervals, touched, sessions):
            df.unpersist()
    finally:
        new.unpersist()
    days = sorted(map(str, parts))
    detail = {"users": n_users, "sessions": n_sessions, "days": days, "version": lake.version(SESSIONS),
              MAX_SESSION_MS: longest, **fixed}  # fmt: skip
    set_watermark(lake, STAGE, up_to, detail)
    return {"run_no": up_to, "users": n_users, "sessions_written": n_sessions, "days_rewritten": len(parts)}


def main(argv: Sequence[str] | None = None) -> int:
    return stage_main(argv, stage=STAGE, doc=__doc__ or "", section=PipelineConfig, execute=execute)
