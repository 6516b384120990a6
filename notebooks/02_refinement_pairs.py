# Databricks notebook source
# MAGIC %md
# MAGIC # 02 · Refinement pairs
# MAGIC
# MAGIC The training pairs of `gold/refinement_pairs`: the model's proposal next to the text the
# MAGIC user kept, with a line diff (`-` proposal, `+` final, `?` marks changed characters).
# MAGIC
# MAGIC Parameters: `lake`, `lake_backend`, `outcome` (`refined`, `kept` or `all`), `limit`
# MAGIC (pairs shown side by side).

# COMMAND ----------

from pyspark.sql import functions as F

from echo.lake.tables import REFINEMENT_PAIRS, SUGGESTIONS
from echo.notebook import open_notebook_lake, show, show_diff, table_or_none, widget

lake_root = widget("lake", "demo/lake")
backend = widget("lake_backend", "auto")
outcome = widget("outcome", "refined")
limit = int(widget("limit", "5"))
spark, lake = open_notebook_lake(lake_root, backend)
pairs = table_or_none(lake, REFINEMENT_PAIRS)
if pairs is None:
    print("gold/refinement_pairs does not exist yet: run `echo-pipeline pairs` (or `run`) on this lake")

# COMMAND ----------

# MAGIC %md
# MAGIC ## Pairs by outcome, split and language

# COMMAND ----------

if pairs is not None:
    show({"pairs": pairs.count()}, "refinement pairs")
    show(pairs.groupBy("outcome", "split").agg(F.count("*").alias("pairs"), F.round(F.sum("weight"), 2).alias("weight"))
         .orderBy("outcome", "split"), "pairs by outcome and split")
    show(pairs.groupBy("language").count().orderBy(F.desc("count")), "pairs by language")
    show(pairs.agg(F.round(F.avg("edit_similarity"), 3).alias("avg_similarity"),
                   F.sum("scrubbed").alias("secrets_scrubbed")), "quality")

# COMMAND ----------

# MAGIC %md
# MAGIC ## Accepted suggestions that did not become pairs
# MAGIC
# MAGIC `rewritten`, `deleted` and `replay_gap` suggestions are not training targets; `kept`
# MAGIC and `refined` ones missing here were dropped by the quality filters.

# COMMAND ----------

suggestions = table_or_none(lake, SUGGESTIONS)
if suggestions is not None:
    show(suggestions.groupBy("outcome").count().orderBy(F.desc("count")), "suggestions by outcome")

# COMMAND ----------

# MAGIC %md
# MAGIC ## Proposal vs final text, side by side

# COMMAND ----------

if pairs is not None:
    chosen = pairs if outcome == "all" else pairs.where(F.col("outcome") == outcome)
    rows = (chosen.orderBy(F.col("edit_similarity").asc_nulls_last(), "suggestion_id")
            .select("suggestion_id", "outcome", "language", "edit_similarity", "proposal", "final_text")
            .limit(limit).collect())
    if not rows:
        print(f"no {outcome} pairs")
    for r in rows:
        sim = "-" if r["edit_similarity"] is None else f"{r['edit_similarity']:.2f}"
        show_diff(r["proposal"], r["final_text"],
                  f"{r['suggestion_id']} ({r['outcome']}, {r['language']}, similarity {sim})")
