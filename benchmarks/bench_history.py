"""Cost of a daily batch against the lake's age: the same simulated users over D days,
one batch per day, each `run` (ingest, sessionize, track, pairs) into one lake.

    python benchmarks/bench_history.py --users 20 --days 30 [--out /tmp/echo-history]
    python benchmarks/bench_history.py --summarize /tmp/echo-history/results.json

For every batch it prints seconds per stage and the bytes of the Parquet files the
stages handed to Spark (every ``DataFrameReader.parquet`` call, after the lake's
partition pruning), and the ratio of the last batch to the second (the first builds the
lake). It measures whichever ``echo`` is imported, so the same script gives the
baseline of an older checkout (``PYTHONPATH=/path/to/old/checkout``). Writes
OUT/results.json.

One batch's seconds vary by +-30 % on a shared 2-core machine, so the ratio of two
batches (day 30 / day 2) says little; the summary also fits every batch after the first,
``seconds = a + b * records + c * day`` (least squares), and reports the fitted cost of
a median-size batch on the last day against day 2, with a 95 % interval from the fit's
standard error of ``c``: growth with the lake's age at equal batch size, from all the
batches at once. ``--summarize`` prints that summary for a stored results.json.

The machine's speed also drifts over half an hour, which a fit cannot tell from the
lake's age. ``--ab REPS`` controls for it: it keeps copies of the lake before day 2's
batch and before the last day's, and after the run replays those two batches into fresh
copies of their lakes, alternating (early, late, late, early, ...) REPS times each, so
both ages are timed under the same conditions; it prints the median seconds of each
and their ratio (the simulator's day 2 and day 30 batches are within 1 % of each other
in size). Written to OUT/ab.json.
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


def fit_age(rows: list[dict[str, Any]], key: str = "total_s") -> dict[str, float]:
    """Least squares ``key = a + b * records + c * day`` over the batches after the first
    (the first builds the lake). Returns the fitted ``key`` of a median-size batch on day
    2 and on the last day, their ratio, and the ratio's 95 % interval (``c`` +- 2 standard
    errors)."""
    import numpy as np

    rs = [r for r in rows if r["day"] >= 2]
    x = np.array([[1.0, r["records"] / 1000, r["day"]] for r in rs])
    y = np.array([float(r[key]) for r in rs])
    coef, *_ = np.linalg.lstsq(x, y, rcond=None)
    resid = y - x @ coef
    dof = max(len(rs) - 3, 1)
    se_c = float(np.sqrt((resid @ resid / dof) * np.linalg.inv(x.T @ x)[2, 2]))
    size = float(np.median([r["records"] for r in rs])) / 1000
    last = max(r["day"] for r in rs)
    c = float(coef[2])
    day2 = float(coef[0] + coef[1] * size + c * 2)
    # the last day's fitted cost with slope c', against day 2's: 1 + c' * (last - 2) / day2
    ratio = lambda slope: 1 + slope * (last - 2) / day2  # noqa: E731
    return {"records": size * 1000, "last_day": last, "day2": day2, "last": day2 * ratio(c), "ratio": ratio(c),
            "ratio_lo": ratio(c - 2 * se_c), "ratio_hi": ratio(c + 2 * se_c), "per_day": c, "per_day_se": se_c}  # fmt: skip


def summarize(rows: list[dict[str, Any]]) -> None:
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
        # and the fit over every batch: growth with age at equal batch size
        for key in ("total_s", "ingest_s", "sessionize_s", "track_s", "pairs_s", "total_mb"):
            f = fit_age(rows, key)
            print(f"fit {key:>12}: {f['per_day']:+.3f} +- {2 * f['per_day_se']:.3f} per day; a {f['records']:,.0f}-record "
                  f"batch on day {f['last_day']} / day 2: {f['ratio']:.2f}x (95 % interval {f['ratio_lo']:.2f}-"
                  f"{f['ratio_hi']:.2f}x; {f['day2']:.1f} -> {f['last']:.1f})")  # fmt: skip


def summarize_ab(ab: list[dict[str, Any]]) -> None:
    """Median seconds per stage of the early and the late batch, and late / early."""
    import statistics

    early, late = min(r["day"] for r in ab), max(r["day"] for r in ab)
    print(f"\n| stage | day {early} (lake of {early - 1} days), median s | day {late} (lake of {late - 1} days), median s | ratio |")
    print("|---|---|---|---|")
    for key in ("ingest_s", "sessionize_s", "track_s", "pairs_s", "total_s", "total_mb"):
        a = statistics.median(r[key] for r in ab if r["day"] == early)
        b = statistics.median(r[key] for r in ab if r["day"] == late)
        print(f"| {key} | {a:.2f} | {b:.2f} | {b / max(a, 1e-9):.2f}x |")
    print("runs (day: total s):", ", ".join(f"{r['day']}: {r['total_s']}" for r in ab))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--users", type=int, default=20)
    ap.add_argument("--days", type=int, default=30)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--out", default="/tmp/echo-history")
    ap.add_argument("--master", default="local[2]")
    ap.add_argument("--summarize", metavar="RESULTS_JSON", help="only print the summary of a stored results.json")
    ap.add_argument("--ab", type=int, default=0, metavar="REPS",
                    help="then replay day 2's and the last day's batch into copies of their lakes, alternating")
    ap.add_argument("--ab-days", default=None, metavar="A,B",
                    help="the two days --ab compares (default: 2 and the last day)")
    ap.add_argument("--run-days", type=int, default=None, metavar="N",
                    help="run only the first N days (a later --ab day's lake copy must exist in OUT from an earlier run)")
    args = ap.parse_args()
    if args.summarize:
        summarize(json.loads(Path(args.summarize).read_text()))
        return 0

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
    def run_batch(lake: Any, lake_cfg: Any, day: int, batch: Path) -> dict[str, Any]:
        records = sum(1 for f in batch.rglob("*.jsonl*") for _ in open(f, "rb"))  # noqa: SIM115
        row: dict[str, Any] = {"day": day, "records": records}
        stages = (
            ("ingest", lambda p: ingest.execute(spark, lake, [str(batch)], cfg, progress=p)),
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
        return row

    ab_days = [int(d) for d in args.ab_days.split(",")] if args.ab_days else [2, len(batches)]
    snaps = {d: out / f"lake-before-day-{d}" for d in ab_days}
    run_days = args.run_days or len(batches)
    missing = [d for d in ab_days if args.ab and d > run_days and not snaps[d].exists()]
    if missing:
        raise SystemExit(f"--ab-days {missing[0]} needs {snaps[missing[0]]} (a run with --run-days >= {missing[0]})")
    for day, batch in enumerate(batches[:run_days], start=1):
        if args.ab and day in snaps:
            shutil.rmtree(snaps[day], ignore_errors=True)
            shutil.copytree(lake_dir, snaps[day])
        row = run_batch(lake, lake_cfg, day, batch)
        rows.append(row)
        print(json.dumps(row), flush=True)
    ab: list[dict[str, Any]] = []
    for rep in range(args.ab):
        for day in sorted(snaps) if rep % 2 == 0 else sorted(snaps, reverse=True):
            work = out / "lake-ab"
            shutil.rmtree(work, ignore_errors=True)
            shutil.copytree(snaps[day], work)
            wl = open_lake(spark, str(work))
            row = {"rep": rep, **run_batch(wl, LakeConfig(lake=str(work)), day, batches[day - 1])}
            ab.append(row)
            print("ab", json.dumps(row), flush=True)
    spark.stop()
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(rows, indent=2))
    summarize(rows)
    if ab:
        (out / "ab.json").write_text(json.dumps(ab, indent=2))
        summarize_ab(ab)
    return 0


if __name__ == "__main__":
    sys.exit(main())
