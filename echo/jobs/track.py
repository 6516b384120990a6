"""track: replay documents -> silver/suggestions, gold/acceptance_metrics.

    python -m echo track --lake DIR [--refine-window-s 600] [--min-refine-similarity 0.5]
    spark-submit jobs/track.py --lake DIR
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from pyspark.sql import functions as F

from echo.config import PipelineConfig
from echo.jobs.common import stage_main
from echo.jobs.incremental import affected_users, events_of, rewrite_users
from echo.jobs.state import set_watermark
from echo.lake.tables import ACCEPTANCE_METRICS, SUGGESTIONS
from echo.progress import Progress
from echo.stages.replay import ReplaySettings
from echo.stages.sessionize import assign_sessions
from echo.stages.track import acceptance_metrics, shown_day, track

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

    from echo.config import LakeConfig
    from echo.lake import Lake

STAGE = "track"


def _days(df: DataFrame) -> set[Any]:
    return {r[0] for r in df.where(F.col("shown_ts_ms").isNotNull()).select(shown_day().alias("d")).distinct().collect()}


def execute(
    spark: SparkSession, lake: Lake, lake_cfg: LakeConfig, cfg: PipelineConfig, *, progress: Progress
) -> dict[str, Any]:
    lake.ensure(SUGGESTIONS)
    lake.ensure(ACCEPTANCE_METRICS)
    users, since, up_to = affected_users(lake, STAGE, lake.buckets)
    users = users.cache()
    try:
        n_users = users.count()
        progress.step(f"runs {since + 1}..{up_to}: users with new events", users=n_users)
        if n_users == 0:
            set_watermark(lake, STAGE, up_to, {"users": 0})
            return {"run_no": up_to, "users": 0, "suggestions_written": 0}
        settings = ReplaySettings(cfg.refine_window_s, cfg.min_refine_similarity)
        events = assign_sessions(events_of(lake, users, up_to), gap_s=cfg.session_gap_s)
        suggestions = track(events, settings=settings, buckets=lake.buckets).cache()
        n_sugg = suggestions.count()
        progress.step("documents replayed", suggestions=n_sugg)
        table = lake.read(SUGGESTIONS)
        old = table.join(F.broadcast(users.select("user_id")), on="user_id", how="left_semi")
        days = _days(old) | _days(suggestions)
        info = {"echo.stage": STAGE, "echo.run_no": str(up_to)}
        # Metrics first, from what silver/suggestions will hold (other users' rows as they
        # are, these users' new rows): if the run dies between the two commits, the rerun
        # reads the same old rows and days again; if it dies after both, the days of the old
        # rows (which the rerun no longer sees) are already right.
        if days:
            on_days = shown_day().isin(sorted(days))
            after = (
                table.where(on_days)
                .join(F.broadcast(users.select("user_id")), on="user_id", how="left_anti")
                .unionByName(suggestions.where(on_days).select(*SUGGESTIONS.columns))
            )
            lake.replace_partitions(ACCEPTANCE_METRICS, acceptance_metrics(after).coalesce(1), sorted(days), info=info)
            progress.step("gold/acceptance_metrics committed", days=len(days), version=lake.version(ACCEPTANCE_METRICS))
        buckets = rewrite_users(lake, SUGGESTIONS, suggestions, users, info=info)
        outcomes = {r[0]: int(r[1]) for r in suggestions.groupBy("outcome").count().collect()}
        suggestions.unpersist()
        progress.step("silver/suggestions committed", buckets=len(buckets), version=lake.version(SUGGESTIONS))
    finally:
        users.unpersist()
    detail = {"users": n_users, "suggestions": n_sugg, "outcomes": outcomes, "days": sorted(map(str, days))}
    set_watermark(lake, STAGE, up_to, detail)
    return {"run_no": up_to, "users": n_users, "suggestions_written": n_sugg, "outcomes": outcomes,
            "metric_days": len(days)}  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    return stage_main(argv, stage=STAGE, doc=__doc__ or "", section=PipelineConfig, execute=execute)
