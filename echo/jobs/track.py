"""track: replay documents -> silver/suggestions, gold/acceptance_metrics.

    python -m echo track --lake DIR [--refine-window-s 600] [--min-refine-similarity 0.5]
    spark-submit jobs/track.py --lake DIR

Bounded (docs/architecture.md, "Incremental runs"): the documents replayed are those
with new events and those with an event inside an interval whose sessions sessionize
recomputed (``_echo/session_changes``: a session id or end, hence a horizon, may have
changed). Each is replayed from all its events, read from the bronze days it has events
on (``_echo/doc_days``), with its sessions from silver/sessions. Only the ``day``
partitions holding changed rows are rewritten, and the metrics of only the days whose
suggestions changed. Track runs up to the runs sessionize has processed.
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from pyspark.sql import functions as F

from echo.config import PipelineConfig
from echo.jobs.common import stage_main
from echo.jobs.incremental import (
    expand_days,
    fixed_settings,
    new_events,
    record_changes,
    replace_rows,
)
from echo.jobs.sessionize import STAGE as SESSIONIZE
from echo.jobs.sessionize import events_in, max_session_ms
from echo.jobs.state import latest_run, set_watermark, watermark
from echo.lake.tables import (
    ACCEPTANCE_METRICS,
    DOC_DAYS,
    EVENTS,
    ORPHAN_DAY,
    SESSION_CHANGES,
    SESSIONS,
    SUGGESTION_CHANGES,
    SUGGESTIONS,
)
from echo.progress import Progress
from echo.stages.replay import ReplaySettings
from echo.stages.track import acceptance_metrics, replay_documents, shown_day, with_partition

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

    from echo.config import LakeConfig
    from echo.lake import Lake

STAGE = "track"
#: silver/suggestions rows are one per suggestion and document
ROW_KEYS = ("suggestion_id", "doc_id")
DAY_MS = 86_400_000


def _days(df: DataFrame) -> set[Any]:
    return {r[0] for r in df.where(F.col("shown_ts_ms").isNotNull()).select(shown_day().alias("d")).distinct().collect()}


def affected_docs(lake: Lake, new: DataFrame, since: int, up_to: int) -> DataFrame:
    """``doc_id, user_id`` of the documents whose rows can change: those with new events,
    and those with an event in an interval whose sessions were recomputed."""
    changes = lake.read_partitions(SESSION_CHANGES, list(range(since + 1, up_to + 1)))
    in_changes = events_in(lake, changes, up_to).select("doc_id", "user_id")
    return new.select("doc_id", "user_id").unionByName(in_changes).distinct()


def with_sessions(lake: Lake, events: DataFrame, days: list[datetime.date]) -> DataFrame:
    """Each event with ``session_id`` and ``session_end_ts_ms`` of its session (sessions
    starting at most the longest session's length before the event's day)."""
    back = max_session_ms(lake) // DAY_MS + 1
    start_days = expand_days((d - datetime.timedelta(days=back), d) for d in days)
    s = lake.read_partitions(SESSIONS, start_days).select(
        F.col("user_id").alias("_su"), "session_id", F.col("start_ts_ms").alias("_ss"),
        F.col("end_ts_ms").alias("session_end_ts_ms"),
    )  # fmt: skip
    cond = (F.col("user_id") == F.col("_su")) & F.col("ts_ms").between(F.col("_ss"), F.col("session_end_ts_ms"))
    return events.join(s, cond, "left").drop("_su", "_ss")


def execute(
    spark: SparkSession, lake: Lake, lake_cfg: LakeConfig, cfg: PipelineConfig, *, progress: Progress
) -> dict[str, Any]:
    for t in (SUGGESTIONS, ACCEPTANCE_METRICS, DOC_DAYS, SUGGESTION_CHANGES):
        lake.ensure(t)
    fixed = fixed_settings(
        lake, STAGE, {"refine_window_s": cfg.refine_window_s, "min_refine_similarity": cfg.min_refine_similarity}
    )
    since = watermark(lake, STAGE)
    up_to = max(since, min(latest_run(lake), watermark(lake, SESSIONIZE)))
    new = new_events(lake, since, up_to).select("doc_id", "user_id", "event_date").cache()
    docs = affected_docs(lake, new, since, up_to).cache()
    info = {"echo.stage": STAGE, "echo.run_no": str(up_to)}
    try:
        n_docs = docs.count()
        progress.step(f"runs {since + 1}..{up_to}: documents to replay", documents=n_docs)
        if n_docs == 0:
            set_watermark(lake, STAGE, up_to, {"documents": 0, **fixed})
            return {"run_no": up_to, "documents": 0, "suggestions_written": 0}
        ids = docs.select("doc_id")
        new_days = new.select("doc_id", "user_id", "event_date").distinct()
        known_days = lake.read(DOC_DAYS).select("doc_id", "event_date").join(ids, "doc_id", "left_semi")
        days = sorted(
            {r[0] for r in known_days.select("event_date").union(new_days.select("event_date")).distinct().collect()}
        )
        events = lake.read_partitions(EVENTS, days).where(F.col("run_no") <= up_to).join(ids, "doc_id", "left_semi")
        settings = ReplaySettings(cfg.refine_window_s, cfg.min_refine_similarity)
        rows = replay_documents(with_sessions(lake, events, days), settings=settings).cache()
        rows, removed, parts, metric_days = _resolve(lake, rows, ids, days)
        n_sugg = rows.count()
        progress.step("documents replayed", suggestions=n_sugg)
        # The rows this run writes or removes, for pairs, before anything they describe.
        # Kept with what an interrupted attempt of this run recorded: after a crash past
        # the suggestions commit, the rerun reads the new rows as the stored ones, and the
        # rows the first attempt removed must stay recorded.
        keys = [c for c in SUGGESTION_CHANGES.columns if c != "run_no"]
        changed = rows.select(*keys).unionByName(removed.select(*keys))
        record_changes(lake, SUGGESTION_CHANGES, changed, since=since, up_to=up_to, info=info)
        # Metrics next, from what silver/suggestions will hold on those days (the stored
        # rows less the ones replaced, plus the new ones): if the run dies between the two
        # commits, the rerun reads the same old rows and days again; if it dies after both,
        # the days only the old rows had are already right.
        if metric_days:
            after = (
                lake.read_partitions(SUGGESTIONS, metric_days).join(removed.select(*ROW_KEYS), list(ROW_KEYS), "left_anti")
                .unionByName(rows.where(F.col("day").isin(metric_days)).select(*SUGGESTIONS.columns))
                .where(F.col("shown_ts_ms").isNotNull())
            )  # fmt: skip
            lake.replace_partitions(ACCEPTANCE_METRICS, acceptance_metrics(after).coalesce(1), metric_days, info=info)
            progress.step("gold/acceptance_metrics committed", days=len(metric_days), version=lake.version(ACCEPTANCE_METRICS))
        replace_rows(lake, SUGGESTIONS, rows, removed, parts, keys=ROW_KEYS, info=info)
        outcomes = {r[0]: int(r[1]) for r in rows.groupBy("outcome").count().collect()}
        progress.step("silver/suggestions committed", days=len(parts), version=lake.version(SUGGESTIONS))
        recorded = new_days.withColumn("run_no", F.lit(up_to).cast("long"))
        # this run's new events include those of any interrupted attempt: its rows go
        lake.replace_partitions(DOC_DAYS, recorded.coalesce(1), list(range(since + 1, up_to + 1)), info=info)
        rows.unpersist()
        removed.unpersist()
    finally:
        new.unpersist()
        docs.unpersist()
    detail = {"documents": n_docs, "suggestions": n_sugg, "outcomes": outcomes, "days": sorted(map(str, metric_days)),
              "partitions": len(parts), **fixed}  # fmt: skip
    set_watermark(lake, STAGE, up_to, detail)
    return {"run_no": up_to, "documents": n_docs, "suggestions_written": n_sugg, "outcomes": outcomes,
            "metric_days": len(metric_days), "days_rewritten": len(parts)}  # fmt: skip


def _resolve(
    lake: Lake, replayed: DataFrame, ids: DataFrame, days: list[datetime.date]
) -> tuple[DataFrame, DataFrame, list[Any], list[Any]]:
    """Apply the orphan rule across documents (an orphan row stands only when no
    document has a shown event for its suggestion) to the replayed documents' rows and
    the stored ones. Returns ``(rows to write, rows to remove [suggestion_id, doc_id],
    partitions to rewrite, metric days)``.

    A replayed orphan stands when no replayed row is shown for its suggestion and either
    the same orphan row is stored (it stood before this run, so no older shown existed
    anywhere; any newer shown is in a replayed document) or, for an orphan new to the
    table, no stored row anywhere is a shown one (a lookup of the suggestion_id column,
    only in runs that produce new orphans). A stored orphan of another document falls
    when a replayed row shows its suggestion.
    """
    shown = replayed.where(F.col("outcome") != "orphan").select("suggestion_id").distinct()
    orphans = replayed.where(F.col("outcome") == "orphan").join(shown, "suggestion_id", "left_anti")
    stored_orphans = lake.read_partitions(SUGGESTIONS, [ORPHAN_DAY]).where(F.col("outcome") == "orphan")
    stood = orphans.join(stored_orphans.select(*ROW_KEYS), list(ROW_KEYS), "left_semi")
    fresh = orphans.join(stored_orphans.select(*ROW_KEYS), list(ROW_KEYS), "left_anti").cache()
    if fresh.limit(1).count():
        shown_anywhere = (
            lake.read(SUGGESTIONS).where(F.col("outcome") != "orphan").select("suggestion_id")
            .join(fresh.select("suggestion_id").distinct(), "suggestion_id", "left_semi")
        )  # fmt: skip
        fresh = fresh.join(shown_anywhere, "suggestion_id", "left_anti")
    rows = with_partition(
        replayed.where(F.col("outcome") != "orphan").unionByName(stood).unionByName(fresh), lake.buckets
    ).cache()
    old = (
        lake.read_partitions(SUGGESTIONS, [*days, ORPHAN_DAY]).join(ids, "doc_id", "left_semi")
        .unionByName(stored_orphans.join(shown, "suggestion_id", "left_semi"))
        .select("suggestion_id", "doc_id", "user_id", "day", "shown_ts_ms")
    ).cache()  # fmt: skip
    parts = {r[0] for r in old.select("day").union(rows.select("day")).distinct().collect()}
    metric_days = sorted(_days(old) | _days(rows))
    fresh.unpersist()
    return rows, old, sorted(parts), metric_days


def main(argv: Sequence[str] | None = None) -> int:
    return stage_main(argv, stage=STAGE, doc=__doc__ or "", section=PipelineConfig, execute=execute)
