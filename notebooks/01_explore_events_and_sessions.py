# Databricks notebook source
# MAGIC %md
# MAGIC # 01 · Explore events and sessions
# MAGIC
# MAGIC What the lake holds after `ingest` and `sessionize`: events by type, language and day,
# MAGIC what was quarantined and why, and the shape of the sessions.
# MAGIC
# MAGIC Parameters: `lake` (a path or `uc:catalog.schema`), `lake_backend` (`auto`, `delta-rs`,
# MAGIC `delta-spark`). Needs the `echo-pipeline` wheel on the cluster. Locally, set
# MAGIC `ECHO_WIDGET_LAKE=/path/to/lake` and run `python notebooks/01_explore_events_and_sessions.py`.

# COMMAND ----------

from pyspark.sql import functions as F

from echo.lake.tables import EVENTS, QUARANTINE, SESSIONS
from echo.notebook import open_notebook_lake, show, table_or_none, widget

lake_root = widget("lake", "demo/lake")
backend = widget("lake_backend", "auto")
spark, lake = open_notebook_lake(lake_root, backend)
print(f"lake {lake.root} ({lake.backend_name})")

# COMMAND ----------

# MAGIC %md
# MAGIC ## Overview

# COMMAND ----------

events = table_or_none(lake, EVENTS)
quarantine = table_or_none(lake, QUARANTINE)
sessions = table_or_none(lake, SESSIONS)
overview = {
    "events": events.count() if events is not None else None,
    "users": events.select("user_id").distinct().count() if events is not None else None,
    "documents": events.select("doc_id").distinct().count() if events is not None else None,
    "quarantined": quarantine.count() if quarantine is not None else None,
    "sessions": sessions.count() if sessions is not None else None,
}
show(overview, "overview")
if events is None:
    print("bronze/events does not exist yet: run `echo-pipeline ingest` first")

# COMMAND ----------

# MAGIC %md
# MAGIC ## Events by type, language and day

# COMMAND ----------

if events is not None:
    show(events.groupBy("event_type").count().orderBy(F.desc("count")), "events by type")
    show(events.groupBy("language").count().orderBy(F.desc("count")), "events by language")
    show(events.groupBy("event_date").agg(F.count("*").alias("events"), F.countDistinct("user_id").alias("users"))
         .orderBy("event_date"), "events per day")

# COMMAND ----------

# MAGIC %md
# MAGIC ## Quarantine: refused records by reason

# COMMAND ----------

if quarantine is not None:
    show(quarantine.groupBy("reason").count().orderBy(F.desc("count")), "quarantine by reason")
    show(quarantine.select("reason", "detail", "source", "line_no", F.substring("raw", 1, 80).alias("raw"))
         .orderBy("source", "line_no"), "quarantined records")

# COMMAND ----------

# MAGIC %md
# MAGIC ## Sessions

# COMMAND ----------

if sessions is None:
    print("silver/sessions does not exist yet: run `echo-pipeline sessionize`")
else:
    show(sessions.agg(
        F.count("*").alias("sessions"),
        F.round(F.avg("n_events"), 1).alias("avg_events"),
        F.max("n_events").alias("max_events"),
        F.round(F.avg("duration_s"), 1).alias("avg_duration_s"),
        F.round(F.expr("percentile_approx(duration_s, 0.5)"), 1).alias("median_duration_s"),
    ), "session statistics")
    show(sessions.groupBy("user_id").agg(F.count("*").alias("sessions"), F.sum("n_events").alias("events"))
         .orderBy(F.desc("events")), "sessions per user")
    show(sessions.orderBy(F.desc("n_events")).select("session_id", "n_events", "n_docs", "duration_s"),
         "longest sessions")
