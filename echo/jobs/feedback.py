"""The pairs stage's second output: gold/feedback (unpaired KTO rows), see docs/pairs.md.

:func:`write_feedback` is called by :mod:`echo.jobs.pairs` with the silver/suggestions
rows it recomputes, and replaces those rows' feedback the same way gold/refinement_pairs
is replaced (one commit, only the ``day`` partitions of the changed rows).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pyspark import StorageLevel
from pyspark.sql import functions as F

from echo.jobs.incremental import replace_rows
from echo.lake.partitioning import user_bucket
from echo.lake.tables import FEEDBACK
from echo.pairs_config import PairsConfig
from echo.stages.feedback import feedback_from_suggestions, feedback_outcomes
from echo.stages.pairs import FILTER_REASONS
from echo.stages.track import shown_day

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

    from echo.lake import Lake


def empty_feedback_report(cfg: PairsConfig) -> dict[str, Any]:
    return {
        "enabled": cfg.feedback,
        "candidates": 0,
        "rows_written": 0,
        "desirable": 0,
        "undesirable": 0,
        "outcomes": dict.fromkeys(feedback_outcomes(cfg), 0),
        "splits": dict.fromkeys(("train", "val", "test"), 0),
        "filtered": dict.fromkeys(FILTER_REASONS, 0),
        "weight_sum": 0.0,
    }


def write_feedback(
    lake: Lake,
    suggestions: DataFrame,
    removed: DataFrame,
    days: list[Any],
    cfg: PairsConfig,
    source_version: int,
    info: dict[str, str],
    *,
    rebuild: bool = False,
) -> dict[str, Any]:
    """Replace the gold/feedback rows of the ``removed`` keys (``suggestion_id, doc_id``,
    all in ``days``) with those built from ``suggestions``; the counts. With
    ``rebuild``, every stored row is replaced."""
    lake.ensure(FEEDBACK)
    if rebuild:
        stored = lake.read(FEEDBACK)
        removed = stored.select("suggestion_id", "doc_id")
        days = sorted(set(days) | {r[0] for r in stored.select("day").distinct().collect()})
    processed = feedback_from_suggestions(suggestions, cfg, source_version).persist(
        StorageLevel.MEMORY_AND_DISK
    )
    try:
        report = feedback_stats(processed, cfg)
        rows = (
            processed.where(F.col("drop_reason").isNull())
            .withColumn("user_bucket", user_bucket("user_id", lake.buckets))
            .withColumn("day", shown_day())
        )
        keys = ["suggestion_id", "doc_id"]
        replace_rows(lake, FEEDBACK, rows.select(*FEEDBACK.columns), removed, days, keys=keys, info=info)
    finally:
        processed.unpersist()
    report["version"] = lake.version(FEEDBACK)
    return report


def feedback_stats(processed: DataFrame, cfg: PairsConfig) -> dict[str, Any]:
    """Counts per label, outcome, split and filter reason, in one aggregation."""
    kept = F.col("drop_reason").isNull()
    outcomes = feedback_outcomes(cfg)
    splits = ("train", "val", "test")
    aggs = [
        F.count(F.lit(1)).alias("candidates"),
        F.sum(kept.cast("long")).alias("rows_written"),
        F.sum((kept & F.col("label")).cast("long")).alias("desirable"),
        F.sum((kept & ~F.col("label")).cast("long")).alias("undesirable"),
        *[F.sum((kept & (F.col("outcome") == o)).cast("long")).alias(f"o_{o}") for o in outcomes],
        *[F.sum((kept & (F.col("split") == s)).cast("long")).alias(f"s_{s}") for s in splits],
        *[F.sum((F.col("drop_reason") == r).cast("long")).alias(f"f_{r}") for r in FILTER_REASONS],
        F.sum(F.when(kept, F.col("weight"))).alias("weight_sum"),
    ]
    row = processed.agg(*aggs).first()
    d = row.asDict() if row else {}

    def n(key: str) -> int:
        return int(d.get(key) or 0)

    return {
        "enabled": cfg.feedback,
        "candidates": n("candidates"),
        "rows_written": n("rows_written"),
        "desirable": n("desirable"),
        "undesirable": n("undesirable"),
        "outcomes": {o: n(f"o_{o}") for o in outcomes},
        "splits": {s: n(f"s_{s}") for s in splits},
        "filtered": {r: n(f"f_{r}") for r in FILTER_REASONS},
        "weight_sum": round(float(d.get("weight_sum") or 0.0), 6),
    }
