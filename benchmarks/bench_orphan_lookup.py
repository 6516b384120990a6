"""Track's lookup of new orphans in silver/suggestions (``echo.jobs.track.not_shown_anywhere``):
by value through the files' bloom filters (``suggestion_id IN (...)``, what a daily run
does) against its semi-join, which reads the ``suggestion_id`` column of every file (what
it did before, and still does for more than ``LOOKUP_IDS`` new orphans), on the same
table, in one process.

    python benchmarks/bench_orphan_lookup.py [--days 60] [--rows-per-day 20000] [--ids 10 --ids 100 --ids 1000]

Two lakes hold the same silver/suggestions rows (``--days`` day partitions of
``--rows-per-day`` suggestions, text columns of a few hundred characters): one written
with the bloom filters (as Echo writes the table), one without. For each number of ids
looked up (a tenth of them present, the rest new), the script times, alternating, over
``--rounds`` rounds: the semi-join on the bloom lake, the lookup by value on the bloom
lake, and the lookup by value on the lake without bloom filters (Parquet's min/max
statistics alone); it prints the median seconds and the bytes Spark's tasks read (input
metrics, from the event log), and writes them to OUT/results.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import eventlog  # benchmarks/eventlog.py: run as a script, its folder is on the path


def _bytes_by_job_group(logdir: Path) -> dict[str, int]:
    """Input bytes of every task, summed per job description."""
    desc: dict[int, str] = {}
    out: dict[str, int] = {}
    for e in eventlog.events(logdir):
        if e["Event"] == "SparkListenerJobStart":
            d = (e.get("Properties") or {}).get("spark.job.description") or ""
            for s in e["Stage IDs"]:
                desc[s] = d
        elif e["Event"] == "SparkListenerTaskEnd":
            m = (e.get("Task Metrics") or {}).get("Input Metrics") or {}
            key = desc.get(e["Stage ID"], "")
            out[key] = out.get(key, 0) + int(m.get("Bytes Read", 0))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--days", type=int, default=60)
    ap.add_argument("--rows-per-day", type=int, default=20_000)
    ap.add_argument("--ids", type=int, action="append", help="ids looked up (repeatable; default 10, 100, 1000)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--out", default="/tmp/echo-bench-orphans")
    args = ap.parse_args()
    sizes = args.ids or [10, 100, 1000]

    from pyspark.sql import functions as F

    from echo.jobs import track
    from echo.lake import open_lake
    from echo.lake.tables import SUGGESTIONS
    from echo.spark import get_spark

    out = Path(args.out)
    shutil.rmtree(out, ignore_errors=True)
    logdir = out / "eventlog"
    logdir.mkdir(parents=True)
    spark = get_spark("echo-bench-orphans", master="local[2]", conf=eventlog.conf(logdir))
    plain_table = dataclasses.replace(SUGGESTIONS, bloom_filters=())
    lakes = {}
    n = args.days * args.rows_per_day
    text = F.concat(F.lit("x" * 150), F.col("id").cast("string"))
    rows = (
        spark.range(n)
        .select(
            F.expr("uuid()").alias("suggestion_id"), F.lit("s").alias("session_id"),
            F.concat(F.lit("u"), (F.col("id") % 500).cast("string")).alias("user_id"),
            F.concat(F.lit("d"), (F.col("id") % 5000).cast("string")).alias("doc_id"),
            F.element_at(F.array(*[F.lit(o) for o in ("kept", "refined", "ignored", "rejected", "orphan")]),
                         (F.col("id") % 5 + 1).cast("int")).alias("outcome"),
            text.alias("proposal"), text.alias("prefix"), text.alias("suffix"), text.alias("final_text"),
            F.date_add(F.lit("2026-01-01").cast("date"), (F.col("id") % args.days).cast("int")).alias("day"),
            F.lit(0).alias("user_bucket"),
        )
    )  # fmt: skip
    for c in SUGGESTIONS.columns:
        if c not in rows.columns:
            rows = rows.withColumn(c, F.lit(None))
    rows = rows.select(*SUGGESTIONS.columns).localCheckpoint()
    for name, table in (("bloom", SUGGESTIONS), ("plain", plain_table)):
        lake = open_lake(spark, str(out / f"lake-{name}"))
        lake.check_root(create=True)
        lake.append(table, rows.repartition("day"))
        lakes[name] = (lake, table)
    present = [r[0] for r in rows.where(F.col("outcome") != "orphan").limit(max(sizes)).collect()]

    def lookup(lookup_ids: int) -> Any:
        """track's own lookup (echo.jobs.track.not_shown_anywhere), by value or, with no
        ids allowed by value, by its semi-join; returns how many ids it found shown."""

        def run(lake: Any, ids: list[str]) -> int:
            fresh = spark.createDataFrame([(i,) for i in ids], "suggestion_id string")
            return len(ids) - track.not_shown_anywhere(lake, fresh, lookup_ids=lookup_ids).count()

        return run

    semi_join, by_value = lookup(0), lookup(track.LOOKUP_IDS)

    ways = {"semi-join": ("bloom", semi_join), "by value": ("bloom", by_value),
            "by value, no bloom filters": ("plain", by_value)}  # fmt: skip
    results: list[dict[str, Any]] = []
    for k in sizes:
        hits = max(1, k // 10)
        ids = present[:hits] + [str(uuid.uuid4()) for _ in range(k - hits)]
        secs: dict[str, list[float]] = {w: [] for w in ways}
        for r in range(args.rounds):
            order = list(ways) if r % 2 == 0 else list(reversed(ways))
            for w in order:
                lake_name, fn = ways[w]
                lake = lakes[lake_name][0]
                spark.sparkContext.setJobDescription(f"{k}|{w}|{r}")
                t = time.perf_counter()
                found = fn(lake, ids)
                secs[w].append(time.perf_counter() - t)
                assert found == hits, (w, found, hits)
        results.append({"ids": k, "present": hits, "seconds": {w: statistics.median(v) for w, v in secs.items()},
                        "all_seconds": secs})  # fmt: skip
    spark.sparkContext.setJobDescription(None)
    files = len(lakes["bloom"][0].files(SUGGESTIONS))
    sizes_mb = {name: sum(os.path.getsize(f.removeprefix("file://")) for f in lake.files(t)) / 1e6
                for name, (lake, t) in lakes.items()}  # fmt: skip
    spark.stop()
    read = _bytes_by_job_group(logdir)
    for res in results:
        res["bytes_per_lookup"] = {
            w: sum(v for key, v in read.items() if key.startswith(f"{res['ids']}|{w}|")) / args.rounds for w in ways
        }
    summary = {"rows": n, "days": args.days, "files": files, "table_mb": sizes_mb, "results": results}
    (out / "results.json").write_text(json.dumps(summary, indent=2))
    print(f"\n{n:,} rows in {files} files ({sizes_mb['bloom']:.1f} MB with bloom filters, "
          f"{sizes_mb['plain']:.1f} MB without)")
    print("\n| ids (present) | semi-join s / MB | by value s / MB | by value without bloom filters s / MB | semi-join / by value |")
    print("|---|---|---|---|---|")
    for res in results:
        s, b = res["seconds"], res["bytes_per_lookup"]
        cells = [f"{s[w]:.2f} / {b[w] / 1e6:.1f}" for w in ways]
        print(f"| {res['ids']} ({res['present']}) | {' | '.join(cells)} | {s['semi-join'] / s['by value']:.1f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
