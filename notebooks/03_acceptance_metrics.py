# Databricks notebook source
# MAGIC %md
# MAGIC # 03 · Acceptance metrics dashboard
# MAGIC
# MAGIC From `gold/acceptance_metrics` (model x language x UTC day): acceptance rate over time,
# MAGIC shown vs accepted per language, what happened to accepted text, and the outcome mix
# MAGIC per model from `silver/suggestions`.
# MAGIC
# MAGIC Parameters: `lake`, `lake_backend`, `days` (last N days; 0 = all).

# COMMAND ----------

from pyspark.sql import functions as F

from echo.lake.tables import ACCEPTANCE_METRICS, SUGGESTIONS
from echo.notebook import acceptance_figures, acceptance_summary, open_notebook_lake, show, table_or_none, widget

lake_root = widget("lake", "demo/lake")
backend = widget("lake_backend", "auto")
days = int(widget("days", "0"))
spark, lake = open_notebook_lake(lake_root, backend)
metrics_df = table_or_none(lake, ACCEPTANCE_METRICS)
if metrics_df is None:
    print("gold/acceptance_metrics does not exist yet: run `echo-pipeline track` on this lake")

# COMMAND ----------

if metrics_df is not None and days > 0:
    last = metrics_df.agg(F.max("day")).first()[0]
    if last is not None:
        metrics_df = metrics_df.where(F.col("day") > F.date_sub(F.lit(last), days))
metrics = metrics_df.orderBy("day", "model_id", "language").toPandas() if metrics_df is not None else None

# COMMAND ----------

# MAGIC %md
# MAGIC ## Totals per model

# COMMAND ----------

if metrics is not None:
    shown, accepted = int(metrics["shown"].sum()), int(metrics["accepted"].sum())
    show({"shown": shown, "accepted": accepted, "acceptance_rate": round(accepted / shown, 4) if shown else None,
          "models": int(metrics["model_id"].nunique()), "days": int(metrics["day"].nunique())}, "overall")
    show(acceptance_summary(metrics), "totals per model")
    show(metrics[["day", "model_id", "language", "shown", "accepted", "acceptance_rate", "char_retention"]],
         "per day, model and language")

# COMMAND ----------

# MAGIC %md
# MAGIC ## Plots

# COMMAND ----------

if metrics is not None and not metrics.empty:
    sugg = table_or_none(lake, SUGGESTIONS)
    outcomes = sugg.groupBy("model_id", "outcome").count().toPandas() if sugg is not None else None
    for title, fig in acceptance_figures(metrics, outcomes).items():
        show(fig, title)
elif metrics is not None:
    print("no metrics rows in the selected days")
