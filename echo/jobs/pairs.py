"""pairs: silver/suggestions -> gold/refinement_pairs (scrubbed, filtered, weighted, split).

    python -m echo pairs --lake DIR [--train-ratio 0.8 --val-ratio 0.1 --test-ratio 0.1]
    spark-submit jobs/pairs.py --lake DIR

Bounded like the other stages (docs/architecture.md, "Incremental runs"): a pair is a
function of its silver/suggestions row alone, so a run recomputes only the rows that the
track runs since the ``pairs`` watermark wrote or removed (``_echo/suggestion_changes``),
reading their ``day`` partitions, and rewrites only those days of gold/refinement_pairs.
Pairs never go past the track watermark. The same rows give gold/typed_pairs
(typed-instead pairs, docs/signals.md; ``--typed-pairs false`` turns them off), rewritten
by the same days in a second commit. A change of the settings (or ``--rebuild``)
recomputes every row. See docs/pairs.md.
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
from echo.jobs.incremental import replace_rows, stored_config_sha
from echo.jobs.state import latest_run, set_watermark, watermark
from echo.lake.partitioning import user_bucket
from echo.lake.tables import (
    ORPHAN_DAY,
    REFINEMENT_PAIRS,
    SUGGESTION_CHANGES,
    SUGGESTIONS,
    TYPED_PAIRS,
)
from echo.pairs_config import PairsConfig
from echo.progress import Progress
from echo.stages.pairs import (
    FILTER_REASONS,
    SCRUB_COLUMNS,
    TYPED_FILTER_REASONS,
    pairs_from_suggestions,
    typed_pairs_from_suggestions,
)
from echo.stages.scrub import TYPES
from echo.stages.track import shown_day

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

    from echo.lake import Lake

STAGE = "pairs"
#: The stage whose output (silver/suggestions) pairs read: pairs never go past its watermark.
UPSTREAM = "track"
#: A pair is one silver/suggestions row's (its keys).
PAIR_KEYS = ["suggestion_id", "doc_id"]


def config_sha(cfg: PairsConfig) -> str:
    return hashlib.sha256(json.dumps(cfg.content_settings(), sort_keys=True).encode()).hexdigest()[
        :16
    ]


def _changed_rows(lake: Lake, since: int, up_to: int) -> DataFrame:
    """``suggestion_id, doc_id, day``: silver/suggestions rows that track runs
    ``(since, up_to]`` wrote or removed."""
    runs = list(range(since + 1, up_to + 1))
    return lake.read_partitions(SUGGESTION_CHANGES, runs).select("suggestion_id", "doc_id", "day").distinct()


def execute(
    spark: SparkSession,
    lake: Lake,
    lake_cfg: LakeConfig,
    cfg: PairsConfig,
    *,
    progress: Progress,
) -> dict[str, Any]:
    lake.ensure(REFINEMENT_PAIRS)
    lake.ensure(TYPED_PAIRS)
    sha = config_sha(cfg)
    stored = stored_config_sha(lake, STAGE)
    rebuild = cfg.rebuild or (stored is not None and stored != sha)
    since = 0 if rebuild else watermark(lake, STAGE)
    up_to = max(since, min(latest_run(lake), watermark(lake, UPSTREAM)))
    source_version = lake.version(SUGGESTIONS) or 0
    empty = {"filtered": {r: 0 for r in FILTER_REASONS}, "scrubbed_by_type": {t: 0 for t in TYPES},
             "scrubbed_pairs": 0, "candidates": 0, "pairs_written": 0,
             "typed": {"enabled": cfg.typed_pairs, "candidates": 0, "pairs_written": 0,
                       "filtered": {r: 0 for r in TYPED_FILTER_REASONS}}}  # fmt: skip
    if rebuild:
        suggestions = lake.read(SUGGESTIONS)
        removed = lake.read(REFINEMENT_PAIRS).select(*PAIR_KEYS)
        removed_typed = lake.read(TYPED_PAIRS).select(*PAIR_KEYS)
        days = (
            _distinct(lake.read(REFINEMENT_PAIRS), "day") | _distinct(lake.read(TYPED_PAIRS), "day")
            | _distinct(suggestions, "day")
        )  # fmt: skip
        n_rows: int | None = None  # every row
        progress.step("rebuild: every silver/suggestions row")
    else:
        changed = _changed_rows(lake, since, up_to).cache()
        n_rows = changed.count()
        progress.step(f"runs {since + 1}..{up_to}: silver/suggestions rows changed", rows=n_rows)
        if n_rows == 0:
            changed.unpersist()
            set_watermark(lake, STAGE, up_to, {"rows": 0, "config_sha": sha})
            return {"run_no": up_to, "rows_changed": 0, "rebuild": False, "days_rewritten": 0, **empty}
        days = _distinct(changed, "day")
        suggestions = lake.read_partitions(SUGGESTIONS, sorted(days)).join(changed, [*PAIR_KEYS, "day"], "left_semi")
        removed = changed.select(*PAIR_KEYS)
        removed_typed = removed
    days.discard(ORPHAN_DAY)  # orphans are never pairs
    processed = pairs_from_suggestions(suggestions, cfg, source_version).persist(StorageLevel.MEMORY_AND_DISK)
    info = {"echo.stage": STAGE, "echo.run_no": str(up_to), "echo.source_version": str(source_version)}
    try:
        stats = _stats(processed)
        progress.step("pairs built", candidates=stats["candidates"], kept=stats["pairs_written"])
        gold = (
            processed.where(F.col("drop_reason").isNull())
            .withColumn("user_bucket", user_bucket("user_id", lake.buckets))
            .withColumn("day", shown_day())
            .select(*REFINEMENT_PAIRS.columns)
        )
        parts = replace_rows(lake, REFINEMENT_PAIRS, gold, removed, sorted(days), keys=PAIR_KEYS, info=info)
        progress.step("gold/refinement_pairs committed", days=len(parts), version=lake.version(REFINEMENT_PAIRS))
        # -- gold/feedback (unpaired KTO rows) of the same rows, written the same way
        from echo.jobs.feedback import write_feedback

        stats["feedback"] = write_feedback(
            lake, suggestions, removed, sorted(days), cfg, source_version, info, rebuild=rebuild
        )
        progress.step("gold/feedback committed", rows=stats["feedback"]["rows_written"],
                      version=stats["feedback"]["version"])  # fmt: skip
        # typed-instead pairs: the same rows, the same days, in a second commit (a crash
        # between the two leaves the watermark behind, and the rerun redoes both); turned
        # off, the changed rows' typed pairs are only removed
        typed_input = suggestions if cfg.typed_pairs else suggestions.where(F.lit(False))
        typed = typed_pairs_from_suggestions(typed_input, cfg, source_version).persist(StorageLevel.MEMORY_AND_DISK)
        try:
            typed_stats = {"enabled": cfg.typed_pairs, **_typed_stats(typed)}
            typed_gold = (
                typed.where(F.col("drop_reason").isNull())
                .withColumn("user_bucket", user_bucket("user_id", lake.buckets))
                .withColumn("day", shown_day())
                .select(*TYPED_PAIRS.columns)
            )
            typed_parts = replace_rows(lake, TYPED_PAIRS, typed_gold, removed_typed, sorted(days), keys=PAIR_KEYS, info=info)
        finally:
            typed.unpersist()
        progress.step("gold/typed_pairs committed", days=len(typed_parts), pairs=typed_stats["pairs_written"],
                      version=lake.version(TYPED_PAIRS))  # fmt: skip
    finally:
        processed.unpersist()
        if not rebuild:
            changed.unpersist()
    report = {"run_no": up_to, "rows_changed": n_rows, "rebuild": rebuild, **stats, "days_rewritten": len(parts),
              "source_version": source_version, "typed": typed_stats}  # fmt: skip
    set_watermark(lake, STAGE, up_to, {**report, "config_sha": sha})
    return report


def _distinct(df: DataFrame, column: str) -> set[Any]:
    return {r[0] for r in df.select(column).distinct().collect()}


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


def _typed_stats(typed: DataFrame) -> dict[str, Any]:
    """Typed-instead counts: candidates, pairs written, per outcome, split and filter."""
    kept = F.col("drop_reason").isNull()
    aggs = [
        F.count(F.lit(1)).alias("candidates"),
        F.sum(kept.cast("long")).alias("pairs_written"),
        *[F.sum((F.col("drop_reason") == r).cast("long")).alias(f"f_{r}") for r in TYPED_FILTER_REASONS],
        F.sum((kept & (F.col("scrubbed") > 0)).cast("long")).alias("scrubbed_pairs"),
    ]
    row = typed.agg(*aggs).first()
    d = row.asDict() if row else {}

    def n(key: str) -> int:
        return int(d.get(key) or 0)

    outcomes = {r[0]: int(r[1]) for r in typed.where(kept).groupBy("outcome").count().collect()}
    splits = {r[0]: int(r[1]) for r in typed.where(kept).groupBy("split").count().collect()}
    return {
        "candidates": n("candidates"),
        "pairs_written": n("pairs_written"),
        "outcomes": {o: outcomes.get(o, 0) for o in ("rejected", "ignored", "rewritten")},
        "splits": {s: splits.get(s, 0) for s in ("train", "val", "test")},
        "filtered": {r: n(f"f_{r}") for r in TYPED_FILTER_REASONS},
        "scrubbed_pairs": n("scrubbed_pairs"),
    }


def main(argv: Sequence[str] | None = None) -> int:
    return stage_main(argv, stage=STAGE, doc=__doc__ or "", section=PairsConfig, execute=execute)
