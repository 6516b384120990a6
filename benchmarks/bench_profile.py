"""Where one stage's time goes, warm: the stage run ROUNDS times in one process, each time
on a fresh copy of the same lake (the lake the stages before it left, built once and kept
in OUT), against three scans of the input (the first one cold); the last round's Spark
jobs, from Spark's event log, with their call sites and seconds (what the jobs leave of a
round is driver work and delta-rs commits); and each round's peak memory (bench_pipeline's
PeakRSS: the first round's is what a fresh job pays, when the lakes before it were built by
an earlier run).

    python benchmarks/bench_profile.py sessionize --rounds 3 [--events-dir /tmp/echo-bench/n1000000/events]

The input is bench_pipeline's (run it first, or name another folder of ``batch-*``).
``--rounds 0`` only builds the lakes the stage starts from (then a later run's first round
measures a fresh job).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import eventlog  # benchmarks/eventlog.py: run as a script, its folder is on the path
from bench_pipeline import PeakRSS, run_stage

ORDER = ("ingest", "sessionize", "track")


def _jobs(logdir: Path) -> list[dict[str, Any]]:
    jobs: dict[int, dict[str, Any]] = {}
    for e in eventlog.events(logdir):
        if e["Event"] == "SparkListenerJobStart":
            site = (e.get("Properties") or {}).get("callSite.short", "")
            jobs[e["Job ID"]] = {"start": e["Submission Time"] / 1000, "site": site}
        elif e["Event"] == "SparkListenerJobEnd":
            jobs[e["Job ID"]]["end"] = e["Completion Time"] / 1000
    return [j for _, j in sorted(jobs.items()) if "end" in j]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("stage", choices=ORDER)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--events-dir", default="/tmp/echo-bench/n1000000/events")
    ap.add_argument("--out", default="/tmp/echo-profile")
    args = ap.parse_args()

    from echo.config import LakeConfig
    from echo.lake import open_lake
    from echo.spark import get_spark

    out = Path(args.out)
    logdir = out / "eventlog"
    shutil.rmtree(logdir, ignore_errors=True)
    logdir.mkdir(parents=True)
    spark = get_spark("echo-profile", master="local[2]", conf=eventlog.conf(logdir))
    batches = sorted(str(p) for p in Path(args.events_dir).iterdir() if p.name.startswith("batch-"))

    def run(stage: str, lake_dir: Path) -> Any:
        lake = open_lake(spark, str(lake_dir))
        lake.check_root(create=True)
        return run_stage(spark, stage, lake, LakeConfig(lake=str(lake_dir)), batches)

    base: Path | None = None  # the lake the stages before this one leave
    built = False
    for stage in ORDER[: ORDER.index(args.stage)]:
        kept = out / f"after-{stage}"
        if not kept.exists():
            tmp = out / "building"
            shutil.rmtree(tmp, ignore_errors=True)
            if base is not None:
                shutil.copytree(base, tmp)
            run(stage, tmp)
            tmp.rename(kept)
            built = True
        base = kept
    if not args.rounds:  # only build the lakes the stage starts from
        spark.stop()
        return 0
    scans = []
    for _ in range(3):
        t = time.perf_counter()
        spark.read.text(batches).count()
        scans.append(round(time.perf_counter() - t, 2))
    rounds = []
    peaks: list[str] = []  # whole process tree; the first round's is a fresh job's when nothing was built
    for _ in range(args.rounds):
        work = out / "work"
        shutil.rmtree(work, ignore_errors=True)
        if base is not None:
            shutil.copytree(base, work)
        with PeakRSS() as mem:
            t0 = time.time()
            run(args.stage, work)
            rounds.append((t0, time.time()))
        peaks.append(f"{mem.peak / 1e9:.2f} GB (JVM {mem.parts['jvm'] / 1e9:.2f})")
    spark.stop()
    print(f"scans (first cold) {scans}; {args.stage} rounds {[round(b - a, 1) for a, b in rounds]} s")
    print(f"peak memory per round: {'; '.join(peaks)}" + (" (lakes built in this process first)" if built else ""))
    t0, t1 = rounds[-1]
    total = 0.0
    print("last round's jobs (start s, seconds, call site):")
    for j in _jobs(logdir):
        if j["start"] >= t0 and j["end"] <= t1 + 1:
            total += j["end"] - j["start"]
            print(f"{j['start'] - t0:7.2f} {j['end'] - j['start']:6.2f}  {j['site']}")
    print(f"jobs {total:.2f} s (concurrent jobs overlap) of a {t1 - t0:.2f} s round")
    return 0


if __name__ == "__main__":
    sys.exit(main())
