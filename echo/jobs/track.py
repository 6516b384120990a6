"""track: replay documents -> silver/suggestions, gold/acceptance_metrics.

    python -m echo track --lake DIR [--refine-window-s 600] [--min-refine-similarity 0.5]
    spark-submit jobs/track.py --lake DIR

Bounded (docs/architecture.md, "Incremental runs" and "Bounded replay"): the documents
replayed are those with new events and those with an event inside the range of a
session that sessionize changed (``_echo/session_changes``: the event's session id or
end, hence a horizon, may have changed). Each is replayed from the lowest version a row that can
change depends on (``_echo/track_state``), reading only the bronze days that hold those
versions (``_echo/doc_days``), with its sessions from silver/sessions; only the rows of
the suggestions replayed are replaced, in the ``day`` partitions holding them, and the
metrics of only the days whose suggestions changed. Track runs up to the runs
sessionize has processed. A first run (nothing stored) replays every document whole
without planning (:func:`first_plan`).
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from pyspark.sql import Window
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
    TRACK_STATE,
)
from echo.progress import Progress
from echo.stages.replay import DEPENDENCY_COLUMNS, ReplaySettings
from echo.stages.track import (
    acceptance_metrics,
    narrow,
    replay_documents,
    shown_day,
    shown_texts,
    with_partition,
    with_shown_texts,
)

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


#: the columns of new and session-changed events that plan a replay
PLAN_COLUMNS = ("doc_id", "user_id", "event_date", "event_type", "suggestion_id", "doc_version", "ts_ms",
                "event_id", "language")  # fmt: skip
#: event types that belong to a suggestion (its "own" events) and types that change a document
OWN_TYPES = ("shown", "accepted", "rejected")
CHANGE_TYPES = ("accepted", "edit")
#: a replay from this version reads the whole document (versions are >= 0, CONTRACT 1.2)
WHOLE = -1
#: At most this many orphans new to silver/suggestions are looked up by value (``IN``),
#: which reads only the footers and bloom filters of the files without them; more are
#: looked up by a semi-join, which reads the ``suggestion_id`` column of every file.
LOOKUP_IDS = 10_000
#: ``_echo/track_state`` is compacted when more run partitions than this lie at or below
#: the watermark (:func:`compact_state`): every 8 runs, a rewrite of one row per suggestion.
STATE_COMPACT_RUNS = 8


def latest_state(lake: Lake, since: int, *, user: bool = False) -> DataFrame:
    """``doc_id, suggestion_id, lo_version, hi_version, reach_version`` (and ``user_id``)
    of every suggestion as of track run ``since`` (the row of the latest run that
    replayed it)."""
    st = lake.read(TRACK_STATE).where(F.col("run_no") <= since)
    cols = ["lo_version", "hi_version", "reach_version", *(["user_id"] if user else [])]
    latest = F.max_by(F.struct(*cols), F.col("run_no"))
    return st.groupBy("doc_id", "suggestion_id").agg(latest.alias("s")).select("doc_id", "suggestion_id", "s.*")


def compact_state(lake: Lake, since: int) -> list[int]:
    """When ``_echo/track_state`` holds more than :data:`STATE_COMPACT_RUNS` run partitions
    at or below the watermark ``since``, replace them, in one commit, with one partition
    (the newest of them: a run that replayed nothing wrote none) holding each suggestion's
    latest row as of ``since``: what :func:`latest_state` gives for ``since`` and every
    later run is unchanged (a newer run's row still wins), and a run reads one row per
    suggestion ever plus those of the runs since the last compaction, instead of one per
    suggestion and replaying run. Returns the runs compacted (none: nothing to do). Rows
    above ``since`` (an interrupted attempt's) are not touched; the run replaces them."""
    runs = sorted(r for r in (int(p) for p in lake.files_per_partition(TRACK_STATE)) if r <= since)
    if len(runs) <= STATE_COMPACT_RUNS:
        return []
    rows = latest_state(lake, since, user=True).withColumn("run_no", F.lit(runs[-1]).cast("long"))
    info = {"echo.stage": STAGE, "echo.run_no": str(since), "echo.op": "compact"}
    lake.replace_partitions(TRACK_STATE, rows.select(*TRACK_STATE.columns).coalesce(1), runs, info=info)
    return runs


def _first_language(ts: str, event_id: str) -> Any:
    """The earliest ``(ts, event_id)`` with a language, with it: a struct to compare."""
    return F.min(F.when(F.col("language").isNotNull(), F.struct(F.col(ts).alias("t"), F.col(event_id).alias("e"),
                                                                  F.col("language").alias("l"))))  # fmt: skip


def replay_plan(
    lake: Lake, new: DataFrame, in_changes: DataFrame, docs: DataFrame, doc_days: DataFrame, since: int
) -> DataFrame:
    """``doc_id, from_version, doc_language``: per affected document, the version its
    bounded replay starts at (docs/architecture.md, "Bounded replay"), and its first
    language over all its events; documents with nothing to replay have no row.

    The start is the lowest of: the versions of new own events (a suggestion with a new
    event), the lowest own version of every stored suggestion whose dependency window
    ``[lo_version, reach_version]`` holds a new change, and the versions of own events in
    the intervals whose sessions changed; lowered until no suggestion has own events on
    both sides of it. A new earliest language replays the whole document. ``doc_days``:
    the affected documents' stored ``_echo/doc_days`` rows."""
    ids = docs.select("doc_id")
    state = latest_state(lake, since).join(ids, "doc_id", "left_semi")
    own_new = new.where(F.col("event_type").isin(*OWN_TYPES) & F.col("suggestion_id").isNotNull())
    c1 = own_new.groupBy("doc_id").agg(F.min("doc_version").alias("c"))
    changes = new.where(F.col("event_type").isin(*CHANGE_TYPES)).select(F.col("doc_id").alias("_d"), "doc_version")
    window = (
        (F.col("doc_id") == F.col("_d"))
        & (F.col("doc_version") >= F.col("lo_version"))
        & (F.col("reach_version").isNull() | (F.col("doc_version") <= F.col("reach_version")))
    )
    c2 = state.join(changes, window).groupBy("doc_id").agg(F.min("lo_version").alias("c"))
    c3 = (
        in_changes.where(F.col("event_type").isin(*OWN_TYPES) & F.col("suggestion_id").isNotNull())
        .groupBy("doc_id").agg(F.min("doc_version").alias("c"))
    )  # fmt: skip
    stored_lang = doc_days.groupBy("doc_id").agg(_first_language("language_ts_ms", "language_event_id").alias("old"))
    new_lang = new.groupBy("doc_id").agg(_first_language("ts_ms", "event_id").alias("new"))
    lang = (
        ids.join(stored_lang, "doc_id", "left")
        .join(new_lang, "doc_id", "left")
        .select(
            "doc_id",
            F.least("old", "new")["l"].alias("doc_language"),
            # a new earliest language can change rows that fell back on the document's
            (F.col("new").isNotNull() & (F.col("old").isNull() | (F.col("new") < F.col("old")))).alias("relanguage"),
        )
    )
    cand = (
        c1.unionByName(c2).unionByName(c3).groupBy("doc_id").agg(F.min("c").alias("start"))
        .join(lang, "doc_id", "right")
        .select("doc_id", F.when(F.col("relanguage"), F.lit(WHOLE)).otherwise(F.col("start")).alias("start"),
                "doc_language")
        .where(F.col("start").isNotNull())
    )  # fmt: skip
    spans = (
        state.select("doc_id", "suggestion_id", F.col("lo_version").alias("lo"), F.col("hi_version").alias("hi"))
        .unionByName(own_new.select("doc_id", "suggestion_id", F.col("doc_version").alias("lo"),
                                    F.col("doc_version").alias("hi")))
        .groupBy("doc_id", "suggestion_id").agg(F.min("lo").alias("lo"), F.max("hi").alias("hi"))
        .join(cand.select("doc_id", "start"), "doc_id")
        .select("doc_id", "lo", "hi", "start")
    )  # fmt: skip
    # The start, lowered until no suggestion has own events on both sides of it: the
    # largest of the start and the suggestions' lowest versions below it that no span
    # straddles (no other span with lo < x <= hi). A span [x, x] anchors the start itself.
    anchor = cand.select("doc_id", F.col("start").alias("lo"), F.col("start").alias("hi"), "start")
    below = Window.partitionBy("doc_id").orderBy("lo").rangeBetween(Window.unboundedPreceding, -1)
    candidates = spans.unionByName(anchor).where(F.col("lo") <= F.col("start"))
    covered = candidates.withColumn("covered", F.max("hi").over(below))
    free = covered.where(F.col("covered").isNull() | (F.col("covered") < F.col("lo")))
    starts = free.groupBy("doc_id").agg(F.max("lo").alias("from_version"))
    return starts.join(cand.select("doc_id", "doc_language"), "doc_id")


def first_plan(new: DataFrame) -> DataFrame:
    """:func:`replay_plan` of a lake track has never run on: nothing is stored, so every
    document with new events is replayed whole (what the plan gives then, without its
    joins and windows over every event)."""
    first = _first_language("ts_ms", "event_id")
    return new.groupBy("doc_id").agg(first.alias("f")).select(
        "doc_id", F.lit(WHOLE).cast("long").alias("from_version"), F.col("f.l").alias("doc_language")
    )


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


def recorded_days(new: DataFrame, run_no: int) -> DataFrame:
    """``_echo/doc_days`` rows of the run's new events."""
    first = _first_language("ts_ms", "event_id")
    return (
        new.groupBy("doc_id", "user_id", "event_date")
        .agg(F.min("doc_version").alias("min_version"), F.max("doc_version").alias("max_version"), first.alias("f"))
        .select("doc_id", "user_id", "event_date", "min_version", "max_version", F.col("f.t").alias("language_ts_ms"),
                F.col("f.e").alias("language_event_id"), F.col("f.l").alias("language"),
                F.lit(run_no).cast("long").alias("run_no"))
    )  # fmt: skip


def execute(
    spark: SparkSession, lake: Lake, lake_cfg: LakeConfig, cfg: PipelineConfig, *, progress: Progress
) -> dict[str, Any]:
    for t in (SUGGESTIONS, ACCEPTANCE_METRICS, DOC_DAYS, TRACK_STATE, SUGGESTION_CHANGES):
        lake.ensure(t)
    fixed = fixed_settings(
        lake, STAGE, {"refine_window_s": cfg.refine_window_s, "min_refine_similarity": cfg.min_refine_similarity}
    )
    since = watermark(lake, STAGE)
    up_to = max(since, min(latest_run(lake), watermark(lake, SESSIONIZE)))
    runs = list(range(since + 1, up_to + 1))
    new = new_events(lake, since, up_to).select(*PLAN_COLUMNS).cache()
    # stored events in the ranges of the sessions sessionize changed: their session id or
    # end, hence a horizon, may have changed (a new event's suggestion is replayed anyway;
    # a first run has no stored events, and replays every document whole)
    if since:
        in_changes = events_in(lake, lake.read_partitions(SESSION_CHANGES, runs), since).select(*PLAN_COLUMNS).cache()
    else:
        in_changes = lake.empty(EVENTS).select(*PLAN_COLUMNS)
    docs = new.select("doc_id", "user_id").unionByName(in_changes.select("doc_id", "user_id")).distinct().cache()
    # the affected documents' stored days (read once: their first language plans the
    # replay, their version ranges pick the days it reads)
    doc_days = (
        lake.read(DOC_DAYS).where(F.col("run_no") <= since).join(docs.select("doc_id"), "doc_id", "left_semi").cache()
    )
    info = {"echo.stage": STAGE, "echo.run_no": str(up_to)}
    plan: DataFrame | None = None
    try:
        if docs.limit(1).count() == 0:
            set_watermark(lake, STAGE, up_to, {"documents": 0, **fixed})
            return {"run_no": up_to, "documents": 0, "suggestions_written": 0}
        # materialized without its lineage: every later query builds on it, and analyzing
        # its plan again in each of them costs more than the run's data (3x at small sizes)
        if since == 0:
            plan = first_plan(new).localCheckpoint()
        else:
            compacted = compact_state(lake, since)
            if compacted:
                progress.step("_echo/track_state compacted", runs=len(compacted), version=lake.version(TRACK_STATE))
            plan = replay_plan(lake, new, in_changes, docs, doc_days, since).localCheckpoint()
        n_docs = plan.count()
        progress.step(f"runs {since + 1}..{up_to}: documents to replay", documents=n_docs)
        starts = plan.select("doc_id", "from_version")
        # the days holding the versions a replay starts from and above
        stored_days = doc_days.join(starts, "doc_id").where(F.col("max_version") >= F.col("from_version"))
        new_days = new.join(starts, "doc_id").where(F.col("doc_version") >= F.col("from_version"))
        days = sorted(
            {r[0] for r in stored_days.select("event_date").union(new_days.select("event_date")).distinct().collect()}
        )
        stored = lake.read_partitions(EVENTS, days).where(F.col("run_no") <= up_to)
        # The replay sees narrow events, narrowed before the plan join shuffles them by
        # document (never the shown events' text, prefix and suffix). The rows written get
        # those from the shown events they chose, joined by event id (unique in bronze):
        # the shown events of these days, without the plan's filters.
        events = narrow(stored).join(plan, "doc_id").where(F.col("doc_version") >= F.col("from_version"))
        settings = ReplaySettings(cfg.refine_window_s, cfg.min_refine_similarity)
        replayed = replay_documents(with_sessions(lake, events, days), settings=settings, bounded=True).cache()
        rows, removed, parts, metric_days = _resolve(lake, replayed, shown_texts(stored), days)
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
        # the state of this run (and of any interrupted attempt of it: its rows go): the
        # replayed suggestions' dependencies, the new events' days
        state = replayed.select("doc_id", "suggestion_id", "user_id", *DEPENDENCY_COLUMNS,
                                F.lit(up_to).cast("long").alias("run_no"))  # fmt: skip
        lake.replace_partitions(TRACK_STATE, state.coalesce(1), runs, info=info)
        lake.replace_partitions(DOC_DAYS, recorded_days(new, up_to).coalesce(1), runs, info=info)
        rows.unpersist()
        removed.unpersist()
        replayed.unpersist()
    finally:
        for df in (new, in_changes, docs, doc_days, plan):
            if df is not None:
                df.unpersist()
    detail = {"documents": n_docs, "suggestions": n_sugg, "outcomes": outcomes, "days": sorted(map(str, metric_days)),
              "partitions": len(parts), "event_days": len(days), **fixed}  # fmt: skip
    set_watermark(lake, STAGE, up_to, detail)
    return {"run_no": up_to, "documents": n_docs, "suggestions_written": n_sugg, "outcomes": outcomes,
            "metric_days": len(metric_days), "days_rewritten": len(parts)}  # fmt: skip


def not_shown_anywhere(lake: Lake, rows: DataFrame, *, lookup_ids: int | None = None) -> DataFrame:
    """``rows`` (with ``suggestion_id``) less those whose suggestion a stored
    silver/suggestions row shows (any outcome but ``orphan``), looked up in every day of
    the table: by value when the distinct ids are at most ``lookup_ids`` (default
    :data:`LOOKUP_IDS`, read when called) (one ``IN``
    filter; the files' bloom filters on ``suggestion_id`` let Spark skip the row groups
    holding none of them), else by a semi-join, which reads the column of every file."""
    if lookup_ids is None:
        lookup_ids = LOOKUP_IDS
    ids = [r[0] for r in rows.select("suggestion_id").distinct().limit(lookup_ids + 1).collect()]
    if not ids:
        return rows
    shown = lake.read(SUGGESTIONS).where(F.col("outcome") != "orphan").select("suggestion_id")
    if len(ids) > lookup_ids:
        return rows.join(shown.join(rows.select("suggestion_id").distinct(), "suggestion_id", "left_semi"),
                         "suggestion_id", "left_anti")  # fmt: skip
    found = [r[0] for r in shown.where(F.col("suggestion_id").isin(ids)).distinct().collect()]
    return rows.where(~F.col("suggestion_id").isin(found)) if found else rows


def _resolve(
    lake: Lake, replayed: DataFrame, texts: DataFrame, days: list[datetime.date]
) -> tuple[DataFrame, DataFrame, list[Any], list[Any]]:
    """Apply the orphan rule across documents (an orphan row stands only when no
    document has a shown event for its suggestion) to the replayed documents' rows and
    the stored ones. Returns ``(rows to write, rows to remove [suggestion_id, doc_id],
    partitions to rewrite, metric days)``; the rows to write get their shown event's
    wide columns from ``texts`` (:func:`~echo.stages.track.shown_texts`).

    A replayed orphan stands when no replayed row is shown for its suggestion and either
    the same orphan row is stored (it stood before this run, so no older shown existed
    anywhere; any newer shown is in a replayed document) or, for an orphan new to the
    table, no stored row anywhere is a shown one (:func:`not_shown_anywhere`, a lookup
    that reads no table unless the run produced new orphans). A stored orphan of another
    document falls when a replayed row shows its suggestion.
    """
    shown = replayed.where(F.col("outcome") != "orphan").select("suggestion_id").distinct()
    orphans = replayed.where(F.col("outcome") == "orphan").join(shown, "suggestion_id", "left_anti")
    stored_orphans = lake.read_partitions(SUGGESTIONS, [ORPHAN_DAY]).where(F.col("outcome") == "orphan")
    stood = orphans.join(stored_orphans.select(*ROW_KEYS), list(ROW_KEYS), "left_semi")
    fresh = orphans.join(stored_orphans.select(*ROW_KEYS), list(ROW_KEYS), "left_anti").cache()
    kept = replayed.where(F.col("outcome") != "orphan").unionByName(stood).unionByName(not_shown_anywhere(lake, fresh))
    rows = with_partition(with_shown_texts(kept, texts), lake.buckets).cache()
    old = (
        lake.read_partitions(SUGGESTIONS, [*days, ORPHAN_DAY]).join(replayed.select(*ROW_KEYS), list(ROW_KEYS), "left_semi")
        .unionByName(stored_orphans.join(shown, "suggestion_id", "left_semi"))
        .select("suggestion_id", "doc_id", "user_id", "day", "shown_ts_ms")
    ).cache()  # fmt: skip
    parts = {r[0] for r in old.select("day").union(rows.select("day")).distinct().collect()}
    metric_days = sorted(_days(old) | _days(rows))
    fresh.unpersist()
    return rows, old, sorted(parts), metric_days


def main(argv: Sequence[str] | None = None) -> int:
    return stage_main(argv, stage=STAGE, doc=__doc__ or "", section=PipelineConfig, execute=execute)
