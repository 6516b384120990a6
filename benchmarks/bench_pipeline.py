"""Throughput of ingest, sessionize and track on generated events, with peak memory,
against the floor: a bare Spark scan of the same input in the same process.

    python benchmarks/bench_pipeline.py --events 1000000 [--events 4000000] [--out /tmp/echo-bench]

Events come from the simulator (light transport faults). For each size the script
prints and writes (OUT/results.json) events/s per stage, the ratio of each stage's
time to the bare scan's (warm: the fastest of two scans after a first, cold one; for
sessionize and track also to a warm scan of the bronze columns they read), and the peak
memory (PSS) of the whole process tree (driver, JVM, Python workers), sampled every
second. Each stage's first run is what a fresh job pays (class loading and code
generation included); unless ``--no-warm``, each stage then runs again on a copy of the
lake it started from, warm like the floor, and that time is divided by the warm scan too,
and by a Spark-native floor of the data movement the stage cannot avoid
(:func:`native_floors`: Spark's own JSON reader and Parquet writer for ingest, the
sessionize transform for sessionize, the shuffle and sort by document for track).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import sys
import threading
import time
from pathlib import Path
from typing import Any


class PeakRSS:
    """Peak memory of this process and all its children: the JVM's RSS plus the Python
    processes' proportional set sizes (PSS), so the pages forked Python workers share
    with their daemon count once (a sum of RSS counts them in every worker). PSS is not
    read for the JVM: the kernel walks its whole heap for it (~0.1 s a read, which would
    slow the stages measured), and it shares no pages with the others."""

    def __init__(self, interval: float = 1.0) -> None:
        import psutil

        self.proc = psutil.Process()
        self.interval = interval
        self.peak = 0
        self.parts: dict[str, int] = {}  # the JVM's RSS and the Python processes' PSS at the peak
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> dict[str, int]:
        import psutil

        parts = {"jvm": 0, "python": 0}
        for p in [self.proc, *self.proc.children(recursive=True)]:
            with contextlib.suppress(Exception):  # a child may exit while we look
                if "java" in p.name():
                    parts["jvm"] += p.memory_info().rss
                else:
                    try:
                        parts["python"] += p.memory_full_info().pss
                    except (AttributeError, psutil.AccessDenied):
                        parts["python"] += p.memory_info().rss
        return parts

    def _take(self) -> None:
        parts = self._sample()
        total = sum(parts.values())
        if total > self.peak:
            self.peak, self.parts = total, parts

    def _run(self) -> None:
        while not self._stop.is_set():
            self._take()
            time.sleep(self.interval)

    def __enter__(self) -> PeakRSS:
        self.peak = 0
        self._take()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._stop.clear()
        self._t.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._t.join()


def generate(n_events: int, out: Path) -> tuple[list[Path], int]:
    from echo.simulate.api import simulate
    from echo.simulate.config import FaultConfig, SimConfig

    marker = out / "events" / "summary.json"
    if marker.exists():
        summary = json.loads(marker.read_text())
        batches = sorted(p for p in (out / "events").iterdir() if p.name.startswith("batch-"))
        return batches, int(summary["events"]["records_written"])
    users = max(2, round(n_events / 2400))  # ~2,400 events per user over 2 days
    res = simulate(SimConfig(users=users, days=2, seed=7, batches=1), FaultConfig(), out=out / "events", progress=True)
    return res.batch_dirs, res.records


def native_floors(spark: Any, paths: list[str], lake: Any, scratch: Path) -> dict[str, float]:
    """What Spark itself takes for the data movement each stage cannot avoid, warm (the
    faster of two runs, after every stage has run once), written as plain Parquet:

    - ``ingest``: Spark's own JSON reader (the event schema, no validation, no
      deduplication, no raw bytes) and Parquet writer over the same records;
    - ``sessionize``: :func:`echo.stages.sessionize.sessionize` over bronze/events
      (the stage's own transform, native Spark already), written as Parquet: what the
      stage adds to it is its incremental bookkeeping, Delta commits and second table;
    - ``track``: the narrow replay columns of bronze/events, shuffled by document and
      sorted by version (the grouping every per-document replay needs), written as
      Parquet: no replay.
    """
    from echo import contract
    from echo.lake.tables import EVENT_FIELDS, EVENTS
    from echo.stages.sessionize import sessionize
    from echo.stages.track import REPLAY_INPUT, narrow

    def native(stage: str) -> Any:
        if stage == "ingest":
            return spark.read.schema(EVENT_FIELDS).json(paths)
        events = lake.read(EVENTS)
        if stage == "sessionize":
            return sessionize(events, gap_s=contract.SESSION_GAP_S, buckets=lake.buckets)
        narrowed = narrow(events)  # REPLAY_INPUT less the session columns bronze does not have
        cols = [c for c in REPLAY_INPUT if c in narrowed.columns]
        return narrowed.select(*cols).repartition("doc_id").sortWithinPartitions("doc_id", "doc_version")

    out: dict[str, float] = {}
    for stage in ("ingest", "sessionize", "track"):
        times = []
        for _ in range(2):
            shutil.rmtree(scratch, ignore_errors=True)
            t = time.perf_counter()
            native(stage).write.parquet(str(scratch))
            times.append(time.perf_counter() - t)
        out[stage] = min(times)
    shutil.rmtree(scratch, ignore_errors=True)
    return out


def run_stage(spark: Any, stage: str, lake: Any, lake_cfg: Any, paths: list[str], *, quiet: bool = False) -> Any:
    """One stage through the pipeline's runner (what ``echo run`` calls), default settings."""
    from echo.jobs.runner import PIPELINE, StageContext

    ctx = StageContext(spark, lake, lake_cfg, events=tuple(paths), quiet=quiet)
    return {s.name: s for s in PIPELINE}[stage](ctx)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, action="append", help="events to generate (repeatable)")
    ap.add_argument("--out", default="/tmp/echo-bench")
    ap.add_argument("--master", default="local[2]")
    ap.add_argument("--no-warm", dest="warm", action="store_false",
                    help="skip the second, warm run of each stage (on a copy of the lake it started from) "
                         "and the Spark-native floors")
    args = ap.parse_args()
    sizes = args.events or [1_000_000]

    from pyspark.sql import functions as F

    from echo.config import LakeConfig
    from echo.lake import open_lake
    from echo.lake.tables import EVENTS
    from echo.spark import get_spark

    spark = get_spark("echo-bench", master=args.master)  # memory sized from the machine (echo/spark.py)
    results = []
    for n in sizes:
        root = Path(args.out) / f"n{n}"
        batches, records = generate(n, root)
        lake_dir = root / "lake"
        shutil.rmtree(lake_dir, ignore_errors=True)
        row: dict[str, Any] = {"events_requested": n, "records": records}
        with PeakRSS() as mem:
            # The floor is a warm scan: the first Spark job of a process also pays for
            # class loading and code generation (~2.5 s here, 3.2 s against 0.6 s warm at
            # 1.1M), which no stage after it pays again. The cold scan is kept for reference.
            scans = []
            for _ in range(3):
                t = time.perf_counter()
                lines = spark.read.text([str(b) for b in batches]).count()
                scans.append(time.perf_counter() - t)
            row["scan_cold_s"], row["scan_s"] = scans[0], min(scans[1:])
            row["scan_lines"] = lines
        row["scan_peak_rss_gb"] = mem.peak / 1e9
        lake_cfg = LakeConfig(lake=str(lake_dir))
        lake = open_lake(spark, lake_cfg.lake)  # one process, a fresh lake: no lease needed
        lake.check_root(create=True)
        paths = [str(b) for b in batches]

        stages = ("ingest", "sessionize", "track")
        for stage in stages:
            if args.warm:  # the lake this stage starts from, for its warm run below
                shutil.rmtree(root / f"before-{stage}", ignore_errors=True)
                shutil.copytree(lake_dir, root / f"before-{stage}")
            with PeakRSS() as mem:
                t = time.perf_counter()
                run_stage(spark, stage, lake, lake_cfg, paths)
                dt = time.perf_counter() - t
            row[f"{stage}_s"] = dt
            row[f"{stage}_events_per_s"] = records / dt
            row[f"{stage}_vs_scan"] = dt / row["scan_s"]
            row[f"{stage}_peak_rss_gb"] = mem.peak / 1e9
            row[f"{stage}_peak_jvm_gb"] = mem.parts.get("jvm", 0) / 1e9  # at the peak
            if stage == "ingest":
                # the floor of sessionize and track: a warm scan of the bronze columns
                # sessionize reads (min of two)
                bronze = []
                for _ in range(2):
                    t = time.perf_counter()
                    lake.read(EVENTS).agg(F.max("user_id"), F.max("ts_ms"), F.max("doc_id")).collect()
                    bronze.append(time.perf_counter() - t)
                row["bronze_scan_s"] = min(bronze)
        if args.warm:
            for stage, secs in native_floors(spark, paths, lake, root / "native").items():
                row[f"{stage}_native_s"] = secs
            # Each stage again, on a copy of the lake it started from: the process has run
            # every stage once, so this run pays no class loading or code generation (as
            # the warm scan does not); the first run above is what a fresh job pays.
            for stage in stages:
                warm_dir = root / "warm-lake"
                shutil.rmtree(warm_dir, ignore_errors=True)
                shutil.copytree(root / f"before-{stage}", warm_dir)
                warm_cfg = LakeConfig(lake=str(warm_dir))
                warm_lake = open_lake(spark, warm_cfg.lake)
                warm_lake.check_root(create=True)
                t = time.perf_counter()
                run_stage(spark, stage, warm_lake, warm_cfg, paths, quiet=True)
                row[f"{stage}_warm_s"] = time.perf_counter() - t
                row[f"{stage}_warm_vs_scan"] = row[f"{stage}_warm_s"] / row["scan_s"]
            shutil.rmtree(root / "warm-lake", ignore_errors=True)
            for stage in stages:
                shutil.rmtree(root / f"before-{stage}", ignore_errors=True)
        results.append(row)
        print(json.dumps(row, indent=2), flush=True)
    spark.stop()
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "results.json").write_text(json.dumps(results, indent=2))
    print("\n| records | scan s (cold) | bronze scan s | ingest s (x scan) | sessionize s (x scan; x bronze scan) "
          "| track s (x scan; x bronze scan) | peak RSS GB |")
    print("|---|---|---|---|---|---|---|")
    for r in results:
        peak = max(r[k] for k in r if k.endswith("peak_rss_gb"))
        cells = [f"{r['ingest_s']:.1f} ({r['ingest_vs_scan']:.1f}x)"] + [
            f"{r[f'{s}_s']:.1f} ({r[f'{s}_vs_scan']:.1f}x; {r[f'{s}_s'] / r['bronze_scan_s']:.1f}x)"
            for s in ("sessionize", "track")
        ]
        print(f"| {r['records']:,} | {r['scan_s']:.2f} ({r['scan_cold_s']:.1f}) | {r['bronze_scan_s']:.2f} "
              f"| {' | '.join(cells)} | {peak:.1f} |")
    if any("ingest_warm_s" in r for r in results):
        print("\n| records | warm scan s | ingest warm s (x scan) | sessionize warm s (x scan) | track warm s (x scan) |")
        print("|---|---|---|---|---|")
        for r in results:
            cells = [f"{r[f'{s}_warm_s']:.1f} ({r[f'{s}_warm_vs_scan']:.1f}x)" for s in ("ingest", "sessionize", "track")]
            print(f"| {r['records']:,} | {r['scan_s']:.2f} | {' | '.join(cells)} |")
        print("\n| records | stage | warm s | Spark-native floor s (warm) | x floor |")
        print("|---|---|---|---|---|")
        for r in results:
            for s in ("ingest", "sessionize", "track"):
                w, f = r[f"{s}_warm_s"], r[f"{s}_native_s"]
                print(f"| {r['records']:,} | {s} | {w:.1f} | {f:.2f} | {w / f:.1f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
