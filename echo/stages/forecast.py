"""Spark side of the outcome forecast: the estimates beside the metrics, and the early
forecast of refine and delete rates per model (torch-free; see docs/graph.md)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pyspark.sql import functions as F

from echo.lake.tables import OUTCOME_ESTIMATES

if TYPE_CHECKING:
    from pyspark.sql import DataFrame


ACCEPTED_CLASSES = ("kept", "refined", "rewritten", "deleted")


def outcome_estimates(predictions: DataFrame) -> DataFrame:
    """gold/outcome_estimates rows: per model_id x language x day, the measured counts and
    ``est_c = count(outcome = c) + sum over replay_gap rows of p_c / (p_kept + p_refined +
    p_rewritten + p_deleted)`` (a replay_gap suggestion was accepted, so its estimate is
    the forecast conditioned on an accepted outcome)."""
    gap = F.col("outcome") == "replay_gap"
    mass = sum((F.col(f"p_{c}") for c in ACCEPTED_CLASSES), F.lit(0.0))
    aggs = [F.count(F.lit(1)).alias("shown")]
    for c in ACCEPTED_CLASSES:
        aggs.append(F.sum((F.col("outcome") == c).cast("long")).alias(c))
    aggs.append(F.sum(gap.cast("long")).alias("replay_gap"))
    for c in ACCEPTED_CLASSES:
        share = F.when(mass > 0, F.col(f"p_{c}") / mass).otherwise(1.0 / len(ACCEPTED_CLASSES))
        est = F.sum((F.col("outcome") == c).cast("double")) + F.coalesce(F.sum(F.when(gap, share)), F.lit(0.0))
        aggs.append(est.alias(f"est_{c}"))
    aggs += [
        F.sum(F.col("horizon_open").cast("long")).alias("open"),
        F.first("forecaster").alias("forecaster"),
        F.first("forecaster_version").alias("forecaster_version"),
    ]
    return predictions.groupBy("model_id", "language", "day").agg(*aggs).select(*OUTCOME_ESTIMATES.columns)


def early_forecast(predictions: DataFrame) -> list[dict[str, Any]]:
    """Per model: the measured refine and delete rates over the suggestions whose horizon
    has closed, beside the forecast rates (mean ``p_refined`` / ``p_deleted``) of the
    suggestions whose horizon is still open, with their counts."""
    closed = ~F.col("horizon_open")
    rows = (
        predictions.groupBy("model_id")
        .agg(
            F.sum(closed.cast("long")).alias("closed"),
            F.avg(F.when(closed, (F.col("outcome") == "refined").cast("double"))).alias("measured_refine_rate"),
            F.avg(F.when(closed, (F.col("outcome") == "deleted").cast("double"))).alias("measured_delete_rate"),
            F.sum(F.col("horizon_open").cast("long")).alias("open"),
            F.avg(F.when(F.col("horizon_open"), F.col("p_refined"))).alias("forecast_refine_rate"),
            F.avg(F.when(F.col("horizon_open"), F.col("p_deleted"))).alias("forecast_delete_rate"),
            F.first("forecaster").alias("forecaster"),
        )
        .orderBy(F.col("model_id").asc_nulls_first())
        .collect()
    )
    return [r.asDict() for r in rows]

