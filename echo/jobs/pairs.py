"""pairs: silver/suggestions -> gold/refinement_pairs (scrubbed, filtered, weighted, split).

    python -m echo pairs --lake DIR [--train-ratio 0.8 --val-ratio 0.1 --test-ratio 0.1]
    spark-submit jobs/pairs.py --lake DIR

Incremental like the other stages: only users with bronze events newer than the
``pairs`` watermark are recomputed (from their current silver/suggestions rows), up to
the run the ``track`` stage has processed, so silver is never ahead of or behind what
is recomputed. A change of the settings recomputes every user. See docs/pairs.md.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from pyspark import StorageLevel
from pyspark.sql import functions as F

from echo.config import LakeConfig
from echo.jobs.common import stage_main
from echo.jobs.incremental import rewrite_users
from echo.jobs.state import latest_run, set_watermark, watermark
from echo.lake.partitioning import user_bucket
from echo.lake.tables import EVENTS, REFINEMENT_PAIRS, STAGE_STATE, SUGGESTIONS
from echo.pairs_config import PairsConfig
from echo.progress import Progress
from echo.stages.pairs import FILTER_REASONS, SCRUB_COLUMNS, pairs_from_suggestions
from echo.stages.scrub import TYPES

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

    from echo.lake import Lake

STAGE = "pairs"
#: The stage whose output (silver/suggestions) pairs read: pairs never go past its watermark.
UPSTREAM = "track"


def config_sha(cfg: PairsConfig) -> str:
    return hashlib.sha256(json.dumps(cfg.content_settings(), sort_keys=True).encode()).hexdigest()[
        :16
    ]


def _stored_config_sha(lake: Lake) -> str | None:
    rows = lake.read(STAGE_STATE).where(F.col("stage") == STAGE).select("detail").collect()
    if not rows or not rows[0][0]:
        return None
    try:
        return json.loads(rows[0][0]).get("config_sha")
    except ValueError:
        return None


def users_to_recompute(lake: Lake, buckets: int, *, rebuild: bool) -> tuple[DataFrame, int, int]:
    """``(users[user_id, user_bucket], since_run, up_to_run)``: users with bronze events in
    runs ``(since, up_to]`` (``up_to`` capped at the track watermark), or every user of
    silver/suggestions and gold when ``rebuild``."""
    since = 0 if rebuild else watermark(lake, STAGE)
    up_to = min(latest_run(lake), watermark(lake, UPSTREAM))
    if rebuild:
        ids = (
            lake.read(SUGGESTIONS)
            .select("user_id")
            .union(lake.read(REFINEMENT_PAIRS).select("user_id"))
        )
    else:
        ids = (
            lake.read(EVENTS)
            .where((F.col("run_no") > since) & (F.col("run_no") <= up_to))
            .select("user_id")
        )
    up_to = max(up_to, since)  # the watermark never moves back
    users = ids.distinct().withColumn("user_bucket", user_bucket("user_id", buckets))
    return users, since, up_to


def execute(
    spark: SparkSession,
    lake: Lake,
    lake_cfg: LakeConfig,
    cfg: PairsConfig,
    *,
    progress: Progress,
) -> dict[str, Any]:
    lake.ensure(REFINEMENT_PAIRS)
    sha = config_sha(cfg)
    stored = _stored_config_sha(lake)
    rebuild = cfg.rebuild or (stored is not None and stored != sha)
    users, since, up_to = users_to_recompute(lake, lake.buckets, rebuild=rebuild)
    users = users.cache()
    source_version = lake.version(SUGGESTIONS) or 0
    empty_counts = {
        "filtered": {r: 0 for r in FILTER_REASONS},
        "scrubbed_by_type": {t: 0 for t in TYPES},
    }
    try:
        n_users = users.count()
        progress.step(
            f"{'rebuild' if rebuild else f'runs {since + 1}..{up_to}'}: users to recompute",
            users=n_users,
        )
        if n_users == 0:
            set_watermark(lake, STAGE, up_to, {"users": 0, "config_sha": sha})
            return {"run_no": up_to, "users": 0, "rebuild": rebuild, "candidates": 0, "pairs_written": 0,
                    **empty_counts, "scrubbed_pairs": 0}  # fmt: skip
        suggestions = lake.read(SUGGESTIONS).join(
            F.broadcast(users.select("user_id")), on="user_id", how="left_semi"
        )
        processed = pairs_from_suggestions(suggestions, cfg, source_version).persist(
            StorageLevel.MEMORY_AND_DISK
        )
        try:
            stats = _stats(processed)
            progress.step(
                "pairs built", candidates=stats["candidates"], kept=stats["pairs_written"]
            )
            gold = processed.where(F.col("drop_reason").isNull()).withColumn(
                "user_bucket", user_bucket("user_id", lake.buckets)
            )
            info = {
                "echo.stage": STAGE,
                "echo.run_no": str(up_to),
                "echo.source_version": str(source_version),
            }
            buckets = rewrite_users(
                lake, REFINEMENT_PAIRS, gold.select(*REFINEMENT_PAIRS.columns), users, info=info
            )
        finally:
            processed.unpersist()
        progress.step(
            "gold/refinement_pairs committed",
            buckets=len(buckets),
            version=lake.version(REFINEMENT_PAIRS),
        )
        # -- gold/feedback (unpaired KTO rows) of the same users, written the same way
        from echo.jobs.feedback import write_feedback

        stats["feedback"] = write_feedback(lake, suggestions, users, cfg, source_version, info)
        progress.step("gold/feedback committed", rows=stats["feedback"]["rows_written"],
                      version=stats["feedback"]["version"])  # fmt: skip
    finally:
        users.unpersist()
    dups = near_duplicates(lake.read(REFINEMENT_PAIRS))
    report = {"run_no": up_to, "users": n_users, "rebuild": rebuild, **stats, "buckets_rewritten": len(buckets),
              "source_version": source_version, "near_duplicates_in_gold": dups}  # fmt: skip
    set_watermark(lake, STAGE, up_to, {**report, "config_sha": sha})
    return report


def _stats(processed: DataFrame) -> dict[str, Any]:
    """Counts per filter reason, per outcome written and per scrubbed type, in one pass."""
    kept = F.col("drop_reason").isNull()
    aggs = [
        F.count(F.lit(1)).alias("candidates"),
        F.sum(kept.cast("long")).alias("pairs_written"),
        F.sum((kept & (F.col("outcome") == "kept")).cast("long")).alias("kept"),
        F.sum((kept & (F.col("outcome") == "refined")).cast("long")).alias("refined"),
        F.sum((F.col("scrubbed") > 0).cast("long")).alias("scrubbed_pairs"),
        *[F.sum((F.col("drop_reason") == r).cast("long")).alias(f"f_{r}") for r in FILTER_REASONS],
        *[F.sum(F.col(c)).alias(c) for c in SCRUB_COLUMNS],
        F.sum(F.when(kept, F.col("weight"))).alias("weight_sum"),
    ]
    row = processed.agg(*aggs).first()
    d = row.asDict() if row else {}

    def n(key: str) -> int:
        return int(d.get(key) or 0)

    splits = {r[0]: int(r[1]) for r in processed.where(kept).groupBy("split").count().collect()}
    return {
        "candidates": n("candidates"),
        "pairs_written": n("pairs_written"),
        "outcomes": {"kept": n("kept"), "refined": n("refined")},
        "splits": {s: splits.get(s, 0) for s in ("train", "val", "test")},
        "filtered": {r: n(f"f_{r}") for r in FILTER_REASONS},
        "scrubbed_pairs": n("scrubbed_pairs"),
        "scrubbed_by_type": {t: n(f"scrub_{t}") for t in TYPES},
        "weight_sum": round(float(d.get("weight_sum") or 0.0), 6),
    }


def near_duplicates(pairs: DataFrame) -> int:
    """Rows of the table that the shards stage drops as near-duplicates (all but the
    lowest suggestion_id of each dedup_key)."""
    row = pairs.agg((F.count(F.lit(1)) - F.countDistinct("dedup_key")).alias("d")).first()
    return int(row[0] or 0) if row else 0


def main(argv: Sequence[str] | None = None) -> int:
    return stage_main(argv, stage=STAGE, doc=__doc__ or "", section=PairsConfig, execute=execute)
