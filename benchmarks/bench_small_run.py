"""The fixed cost of a small run: the four data stages (ingest, sessionize, track, pairs) on
a small batch into a fresh lake, with the driver as it is against the driver as it was
before stop 29, alternating in one process.

    python benchmarks/bench_small_run.py [--events 2000] [--rounds 4] [--out /tmp/echo-small-run]

A small run spends most of its time in the driver and in many small Spark jobs, not in
the data. "before" turns PySpark 4's per-call origin tracking back on (what
``spark.python.sql.dataFrameDebugging.enabled`` left at its default does: ~6 calls to the
JVM for every ``Column`` function), puts back the column-by-column ``Lake.empty`` and
``Lake.conform`` and the unconditional reorder after a read, and reads and moves the
watermarks and publishes an ingest run (``Lake.small_rows``, ``upsert_rows``,
``append_rows``) with Spark jobs again. Each round runs "before" and
"now" (the order alternates), each on a fresh lake; prints each stage's seconds, the
calls to the JVM (py4j) and the ratio of the means after the first round (its first run
also warms the JVM).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from bench_pipeline import generate, run_stage

STAGES = ("ingest", "sessionize", "track", "pairs")


class Py4jCalls:
    """Counts the commands the driver sends to the JVM."""

    def __init__(self) -> None:
        import py4j.clientserver as cs

        self.n = 0
        original = cs.ClientServerConnection.send_command

        def send(conn: Any, command: str) -> Any:
            self.n += 1
            return original(conn, command)

        cs.ClientServerConnection.send_command = send  # type: ignore[method-assign]


@contextmanager
def before() -> Iterator[None]:
    """The driver as it was: origin tracking on, columns one call at a time."""
    import pyspark.errors.utils as pu
    from pyspark.sql import functions as F

    from echo.lake.base import Lake
    from echo.lake.delta_rs import DeltaRsLake

    def empty(self: Any, table: Any) -> Any:
        cols = [F.lit(None).cast(f.dataType).alias(f.name) for f in table.schema.fields]
        return self.spark.range(1).select(*cols).where(F.lit(False))

    def conform(self: Any, table: Any, df: Any) -> Any:
        missing = [c for c in table.columns if c not in df.columns]
        if missing:
            raise ValueError(f"{table.name}: DataFrame lacks column(s) {missing}")
        return df.select(*[F.col(f.name).cast(f.dataType).alias(f.name) for f in table.schema.fields])

    read_files = DeltaRsLake._read_files

    def _read_files(self: Any, table: Any, files: list[str]) -> Any:
        df = read_files(self, table, files)
        return df.select(*table.columns)

    saved = (pu._enable_debugging_cache, Lake.empty, Lake.conform, DeltaRsLake._read_files, DeltaRsLake.small_rows,
             DeltaRsLake.upsert_rows, DeltaRsLake.append_rows)  # fmt: skip
    pu._enable_debugging_cache = True
    Lake.empty, Lake.conform, DeltaRsLake._read_files = empty, conform, _read_files  # type: ignore[method-assign]
    DeltaRsLake.small_rows = Lake.small_rows  # type: ignore[method-assign]  # a Spark job per read
    DeltaRsLake.upsert_rows = Lake.upsert_rows  # type: ignore[method-assign]  # a Spark merge
    DeltaRsLake.append_rows = Lake.append_rows  # type: ignore[method-assign]  # a Spark write
    try:
        yield
    finally:
        (pu._enable_debugging_cache, Lake.empty, Lake.conform, DeltaRsLake._read_files,
         DeltaRsLake.small_rows, DeltaRsLake.upsert_rows, DeltaRsLake.append_rows) = saved  # type: ignore[method-assign]  # fmt: skip


def one_run(spark: Any, lake_dir: Path, paths: list[str], calls: Py4jCalls) -> tuple[dict[str, float], int]:
    from echo.config import LakeConfig
    from echo.lake import open_lake

    shutil.rmtree(lake_dir, ignore_errors=True)
    n0 = calls.n
    lake = open_lake(spark, str(lake_dir))
    lake.check_root(create=True)
    times = {}
    for stage in STAGES:
        t = time.perf_counter()
        run_stage(spark, stage, lake, LakeConfig(lake=str(lake_dir)), paths, quiet=True)
        times[stage] = time.perf_counter() - t
    return times, calls.n - n0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=2000, help="events to generate (bench_pipeline's simulator)")
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--out", default="/tmp/echo-small-run")
    ap.add_argument("--master", default="local[2]")
    args = ap.parse_args()

    from echo.spark import get_spark

    out = Path(args.out)
    batches, records = generate(args.events, out)
    paths = [str(b) for b in batches]
    spark = get_spark("echo-small-run", master=args.master)
    calls = Py4jCalls()
    totals: dict[str, list[float]] = {"before": [], "now": []}
    print(f"{records:,} records; stages {', '.join(STAGES)}", flush=True)
    try:
        for r in range(args.rounds):
            order = ("before", "now") if r % 2 == 0 else ("now", "before")
            for who in order:
                if who == "before":
                    with before():
                        times, n = one_run(spark, out / "lake", paths, calls)
                else:
                    times, n = one_run(spark, out / "lake", paths, calls)
                total = sum(times.values())
                if r > 0:
                    totals[who].append(total)
                per = "  ".join(f"{s} {t:5.2f}" for s, t in times.items())
                print(f"round {r} {who:6s} {total:6.2f} s  ({per})  {n:,} JVM calls", flush=True)
    finally:
        spark.stop()
    if totals["now"] and totals["before"]:
        a, b = statistics.mean(totals["before"]), statistics.mean(totals["now"])
        print(f"mean of rounds 1..{args.rounds - 1}: before {a:.2f} s, now {b:.2f} s: {b / a:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
