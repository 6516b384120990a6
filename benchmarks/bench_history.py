"""Cost of a daily batch against the lake's age: the same simulated users over D days,
one batch per day, each `run` (ingest, sessionize, track, pairs) into one lake.

    python benchmarks/bench_history.py --users 20 --days 30 [--out /tmp/echo-history]

For every batch it prints seconds per stage and the bytes of the Parquet files the
stages handed to Spark (every ``DataFrameReader.parquet`` call, after the lake's
partition pruning), and the ratio of the last batch to the second (the first builds the
lake). It measures whichever ``echo`` is imported, so the same script gives the
baseline of an older checkout (``PYTHONPATH=/path/to/old/checkout``). Writes
OUT/results.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

_BYTES = [0]


def _instrument() -> None:
    """Count the bytes of every Parquet file Spark is asked to read."""
    from pyspark.sql.readwriter import DataFrameReader

    original = DataFrameReader.parquet

    def parquet(self: Any, *paths: str, **options: Any) -> Any:
        for p in paths:
            local = urlparse(p).path if p.startswith("file:") else p  # file:/p and file:///p
            n = 0
            if os.path.isfile(local):
                n = os.path.getsize(local)
            elif os.path.isdir(local):
                for d, _, files in os.walk(local):
                    n += sum(os.path.getsize(os.path.join(d, f)) for f in files if f.endswith(".parquet"))
            _BYTES[0] += n
        return original(self, *paths, **options)

    DataFrameReader.parquet = parquet  # type: ignore[method-assign]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--users", type=int, default=20)
    ap.add_argument("--days", type=int, default=30)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--out", default="/tmp/echo-history")
    ap.add_argument("--master", default="local[2]")
    args = ap.parse_args()

    from echo.config import LakeConfig, PipelineConfig
    from echo.jobs import ingest, sessionize, track
    from echo.jobs import pairs as pairs_job
    from echo.lake import open_lake
    from echo.pairs_config import PairsConfig
    from echo.progress import Progress
    from echo.simulate.api import simulate
    from echo.simulate.config import FaultConfig, SimConfig
    from echo.spark import get_spark

    out = Path(args.out)
    events = out / f"events-u{args.users}-d{args.days}-s{args.seed}"
    if not (events / "summary.json").exists():
        shutil.rmtree(events, ignore_errors=True)
        cfg = SimConfig(users=args.users, days=args.days, seed=args.seed, batches=args.days)
        simulate(cfg, FaultConfig(), out=events)
    batches = sorted(p for p in events.iterdir() if p.name.startswith("batch-"))
    _instrument()
    spark = get_spark("echo-history", master=args.master)
    lake_dir = out / "lake"
    shutil.rmtree(lake_dir, ignore_errors=True)
    lake_cfg, cfg, pcfg = LakeConfig(lake=str(lake_dir)), PipelineConfig(), PairsConfig()
    lake = open_lake(spark, lake_cfg.lake)  # one process, a fresh lake
    lake.check_root(create=True)
    rows = []
    for day, batch in enumerate(batches, start=1):
        records = sum(1 for f in batch.rglob("*.jsonl*") for _ in open(f, "rb"))  # noqa: SIM115
        row: dict[str, Any] = {"day": day, "records": records}
        stages = (
            ("ingest", lambda p, b=batch: ingest.execute(spark, lake, [str(b)], cfg, progress=p)),
            ("sessionize", lambda p: sessionize.execute(spark, lake, lake_cfg, cfg, progress=p)),
            ("track", lambda p: track.execute(spark, lake, lake_cfg, cfg, progress=p)),
            ("pairs", lambda p: pairs_job.execute(spark, lake, lake_cfg, pcfg, progress=p)),
        )
        for stage, fn in stages:
            before, t = _BYTES[0], time.perf_counter()
            fn(Progress(stage, quiet=True))
            row[f"{stage}_s"] = round(time.perf_counter() - t, 2)
            row[f"{stage}_mb"] = round((_BYTES[0] - before) / 1e6, 3)
        row["total_s"] = round(sum(row[f"{s}_s"] for s, _ in stages), 2)
        row["total_mb"] = round(sum(row[f"{s}_mb"] for s, _ in stages), 3)
        rows.append(row)
        print(json.dumps(row), flush=True)
    spark.stop()
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(rows, indent=2))
    print("\n| day | records | ingest s | sessionize s | track s | pairs s | total s | MB read |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['day']} | {r['records']:,} | {r['ingest_s']} | {r['sessionize_s']} | {r['track_s']} | "
              f"{r['pairs_s']} | {r['total_s']} | {r['total_mb']} |")  # fmt: skip
    if len(rows) >= 2:
        a, b = rows[1], rows[-1]
        print(f"\nday {b['day']} / day 2: {b['total_s'] / a['total_s']:.2f}x seconds, "
              f"{b['total_mb'] / max(a['total_mb'], 1e-9):.2f}x bytes read "
              f"(per record: {(b['total_s'] / b['records']) / (a['total_s'] / a['records']):.2f}x seconds)")  # fmt: skip
    if len(rows) >= 7:
        # one batch's time is noisy (GC, Delta log checkpoints every tenth commit): also
        # the mean seconds per 1k records of the last three batches against days 2-4
        def per_k(rs: list[dict[str, Any]]) -> float:
            return 1000 * sum(r["total_s"] for r in rs) / sum(r["records"] for r in rs)

        early, late = per_k(rows[1:4]), per_k(rows[-3:])
        print(f"seconds per 1k records, days 2-4: {early:.3f}; last three days: {late:.3f} "
              f"({late / early:.2f}x)")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
