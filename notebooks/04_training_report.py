# Databricks notebook source
# MAGIC %md
# MAGIC # 04 · Training report
# MAGIC
# MAGIC Reads a training output directory (`echo-pipeline train --out DIR`): `metrics.jsonl`
# MAGIC (one row per step: step, loss, lr, tokens_per_s, ...), `train_result.json`, and the
# MAGIC evaluation report (`echo-pipeline evaluate --out DIR/eval.json`) when present. Any of
# MAGIC them may be missing (a run in progress, no evaluation yet): the notebook says so.
# MAGIC
# MAGIC Parameter: `run_dir`.

# COMMAND ----------

from echo.notebook import metrics_summary, show, training_figure, training_report, widget

run_dir = widget("run_dir", "runs/latest")
report = training_report(run_dir)
if report["missing"]:
    print(f"not found under {run_dir}: {', '.join(report['missing'])}")

# COMMAND ----------

# MAGIC %md
# MAGIC ## Training curve

# COMMAND ----------

rows = report["metrics"]
if rows:
    show(metrics_summary(rows), "training summary")
    show(training_figure(rows), "training curves")
else:
    print("no training metrics (metrics.jsonl) yet")

# COMMAND ----------

# MAGIC %md
# MAGIC ## Result and evaluation

# COMMAND ----------

if report["result"] is not None:
    show(report["result"], "train_result.json")
ev = report["eval"]
if ev is not None:
    wanted = {k: ev[k] for k in ("split", "pairs", "model_metrics", "proposal_metrics", "delta") if k in ev}
    show(wanted or ev, "evaluation")
    if isinstance(ev.get("by_language"), dict):
        show(ev["by_language"], "evaluation by language")
else:
    print("no evaluation report (eval.json) yet: run `echo-pipeline evaluate --out RUN_DIR/eval.json`")
