"""forecast: gold/suggestion_graph + gold/suggestion_edges -> gold/outcome_predictions,
gold/outcome_estimates.

    python -m echo forecast --lake DIR [--base sage --method reweight --as-of-ms MS]

Trains the forecaster (a base with GraphSB-style structural balance, docs/graph.md) on
the suggestions whose horizon has closed by ``--as-of-ms`` (default: the newest show or
accept in the graph) and writes class probabilities for every suggestion shown by then:
(1) estimates for ``replay_gap`` suggestions, whose outcome the contract cannot know,
into gold/outcome_estimates beside the measured counts; (2) the probabilities of the
suggestions whose horizon is still open, from which :func:`echo.stages.forecast.early_forecast`
gives the early refine and delete rates per model. Both tables are replaced as a whole
(the model is retrained on every run). Needs the ``graph`` extra (torch, torch_geometric).
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from pyspark.sql import functions as F

from echo.config import LakeConfig
from echo.errors import ConfigError
from echo.graph.config import ForecastConfig
from echo.graph.forecast import CLASSES, forecast, forecaster_name, forecaster_version
from echo.jobs.common import stage_main
from echo.lake.partitioning import user_bucket
from echo.lake.tables import (
    OUTCOME_ESTIMATES,
    OUTCOME_PREDICTIONS,
    SUGGESTION_EDGES,
    SUGGESTION_GRAPH,
)
from echo.progress import Progress
from echo.stages.forecast import early_forecast, outcome_estimates
from echo.stages.graph import FEATURE_VERSION

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from echo.lake import Lake

STAGE = "forecast"
NODE_COLUMNS = ("suggestion_id", "user_id", "model_id", "language", "shown_ts_ms", "accepted_ts_ms",
                "known_ts_ms", "outcome", "features")  # fmt: skip


def execute(
    spark: SparkSession, lake: Lake, lake_cfg: LakeConfig, cfg: ForecastConfig, *, progress: Progress
) -> dict[str, Any]:
    cfg.validate()
    if not lake.exists(SUGGESTION_GRAPH) or not lake.exists(SUGGESTION_EDGES):
        raise ConfigError("no gold/suggestion_graph in this lake: run 'graph' first")
    g = lake.read(SUGGESTION_GRAPH)
    n = g.count()
    if n == 0:
        raise ConfigError("gold/suggestion_graph is empty: nothing to forecast")
    if n > cfg.max_nodes:
        raise ConfigError(f"the graph has {n} nodes, more than --max-nodes {cfg.max_nodes}")
    nodes = g.select(*NODE_COLUMNS).toPandas()
    edges = lake.read(SUGGESTION_EDGES).select("src_id", "dst_id", "weight").toPandas()
    progress.step("graph read", nodes=len(nodes), edges=len(edges))
    try:
        result = forecast(nodes, edges, cfg)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    progress.step("forecaster trained", **{k: v for k, v in result.report["val_metrics"].items()})
    pred = result.predictions.merge(
        nodes[["suggestion_id", "user_id", "model_id", "language", "shown_ts_ms"]], on="suggestion_id"
    )
    pred["forecaster"] = forecaster_name(cfg)
    pred["forecaster_version"] = forecaster_version(cfg, FEATURE_VERSION)
    pred["predicted_at"] = datetime.datetime.now(datetime.timezone.utc)
    cols = ["suggestion_id", "user_id", "model_id", "language", "shown_ts_ms", "outcome", "horizon_open",
            "used_for_training", *[f"p_{c}" for c in CLASSES], "predicted", "forecaster",
            "forecaster_version", "as_of_ms", "predicted_at"]  # fmt: skip
    df = spark.createDataFrame(pred[cols])
    df = df.withColumn("day", F.to_date(F.timestamp_millis(F.col("shown_ts_ms")))).withColumn(
        "user_bucket", user_bucket("user_id", lake.buckets)
    )
    df = lake.conform(OUTCOME_PREDICTIONS, df)
    info = {"echo.stage": STAGE, "echo.source_version": str(lake.version(SUGGESTION_GRAPH))}
    lake.ensure(OUTCOME_PREDICTIONS)
    lake.ensure(OUTCOME_ESTIMATES)
    old_buckets = {int(r[0]) for r in lake.read(OUTCOME_PREDICTIONS).select("user_bucket").distinct().collect()}
    buckets = sorted(old_buckets | set(range(lake.buckets)))
    lake.replace_partitions(OUTCOME_PREDICTIONS, df.repartition("user_bucket"), buckets, info=info)
    progress.step("gold/outcome_predictions committed", version=lake.version(OUTCOME_PREDICTIONS))
    current = lake.read(OUTCOME_PREDICTIONS)
    old_days = {r[0] for r in lake.read(OUTCOME_ESTIMATES).select("day").distinct().collect()}
    days = sorted(old_days | {r[0] for r in current.select("day").distinct().collect()})
    lake.replace_partitions(OUTCOME_ESTIMATES, outcome_estimates(current).coalesce(1), days, info=info)
    progress.step("gold/outcome_estimates committed", days=len(days))
    early = early_forecast(current)
    return {**result.report, "forecaster": forecaster_name(cfg), "predictions_written": len(pred),
            "early_forecast": early}  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    return stage_main(argv, stage=STAGE, doc=__doc__ or "", section=ForecastConfig, execute=execute)
