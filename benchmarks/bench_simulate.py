"""Simulator throughput: events/s and peak RSS, against a baseline in the same process.

Baseline: json-serialize and write the same number of pre-made events (taken from the
run's own output), single process. The ratio says how much the simulation (users,
documents, proposals, truth, faults) costs on top of just writing the bytes.

    python benchmarks/bench_simulate.py --events 1000000 --out /tmp/bench-sim
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import time
from pathlib import Path

from echo.simulate import FaultConfig, SimConfig, simulate

EVENTS_PER_USER_DAY = 1_200  # measured with the defaults (stdlib corpus)


def _rss_mib() -> tuple[float, float]:
    me = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return me, kids


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=1_000_000, help="approximate number of events")
    ap.add_argument("--days", type=int, default=5)
    ap.add_argument("--out", default="/tmp/bench-simulate")
    ap.add_argument("--faults", default="light")
    ap.add_argument("--workers", type=int, default=0)
    args = ap.parse_args()
    users = max(1, round(args.events / EVENTS_PER_USER_DAY / args.days))
    out = Path(args.out)
    shutil.rmtree(out, ignore_errors=True)
    cfg = SimConfig(users=users, days=args.days, seed=1, shards=16, workers=args.workers)
    t0 = time.perf_counter()
    result = simulate(cfg, FaultConfig(faults=args.faults), out=out, progress=True)
    sim_s = time.perf_counter() - t0
    n = result.records

    sample = []
    with open(next(out.glob("batch-0000/*.jsonl")), "rb") as fh:
        for line in fh:
            try:
                sample.append(json.loads(line))
            except ValueError:
                continue
            if len(sample) >= 20_000:
                break
    t0 = time.perf_counter()
    with open(out / "baseline.jsonl", "wb", buffering=1 << 20) as fh:
        for i in range(n):
            fh.write(json.dumps(sample[i % len(sample)], ensure_ascii=False).encode("utf-8"))
            fh.write(b"\n")
    base_s = time.perf_counter() - t0
    (out / "baseline.jsonl").unlink()
    me, kids = _rss_mib()
    print(
        json.dumps(
            {
                "users": users,
                "days": args.days,
                "records": n,
                "simulate_s": round(sim_s, 1),
                "simulate_events_per_s": round(n / sim_s),
                "baseline_write_s": round(base_s, 1),
                "baseline_events_per_s": round(n / base_s),
                "ratio_simulate_over_baseline": round(sim_s / base_s, 2),
                "peak_rss_parent_mib": round(me),
                "peak_rss_worker_mib": round(kids),
                "output_mib": round(sum(p.stat().st_size for p in out.rglob("*") if p.is_file()) / 2**20),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
