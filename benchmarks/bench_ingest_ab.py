"""ingest of this checkout against ingest of an earlier commit, alternating, in one process.

    python benchmarks/bench_ingest_ab.py --events-dir /tmp/echo-bench/n1000000/events \\
        --baseline f49de1f [--rounds 2] [--out /tmp/echo-ingest-ab]

The baseline is ``echo/jobs/ingest.py`` as of ``--baseline`` (a git revision), loaded as a
module next to the current one; both use this checkout's stages and lake, so the
comparison is of the job's plan (what it caches, shuffles and joins). Each round runs a
bare scan of the input, then each version's ``execute`` on a fresh lake; prints seconds,
peak memory (bench_pipeline's PeakRSS) and whether the bronze tables are identical.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from bench_pipeline import PeakRSS


def _load(name: str, path: Path) -> Any:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _digest(lake: Path) -> dict[str, str]:
    """Per bronze table: a digest of its rows (order-free), without the run's timestamps."""
    from deltalake import DeltaTable

    out = {}
    for name in ("bronze/events", "bronze/quarantine", "_echo/event_index"):
        rows = DeltaTable(str(lake / name)).to_pyarrow_table().to_pylist()
        keys = sorted(
            hashlib.sha256(repr(sorted((k, v) for k, v in r.items() if k not in ("ingested_at", "ingest_date"))).encode()).hexdigest()
            for r in rows
        )
        out[name] = hashlib.sha256("".join(keys).encode()).hexdigest()[:16]
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events-dir", required=True, help="a folder of batch-* input folders (bench_pipeline's events)")
    ap.add_argument("--baseline", required=True, help="git revision whose echo/jobs/ingest.py is the baseline")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--out", default="/tmp/echo-ingest-ab")
    ap.add_argument("--master", default="local[2]")
    args = ap.parse_args()

    from echo.config import PipelineConfig
    from echo.lake import open_lake
    from echo.progress import Progress
    from echo.spark import get_spark

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    repo = Path(__file__).resolve().parent.parent
    old_src = subprocess.run(["git", "show", f"{args.baseline}:echo/jobs/ingest.py"], cwd=repo, check=True,
                             capture_output=True, text=True).stdout  # fmt: skip
    (out / "ingest_baseline.py").write_text(old_src)
    versions = {"baseline": _load("ingest_baseline", out / "ingest_baseline.py"),
                "current": _load("ingest_current", repo / "echo" / "jobs" / "ingest.py")}  # fmt: skip
    batches = sorted(str(p) for p in Path(args.events_dir).iterdir() if p.name.startswith("batch-"))
    spark = get_spark("echo-bench-ingest-ab", master=args.master)
    results: dict[str, list[dict[str, Any]]] = {"scan": [], **{k: [] for k in versions}}
    for _ in range(args.rounds):
        t = time.perf_counter()
        spark.read.text(batches).count()
        results["scan"].append({"s": round(time.perf_counter() - t, 2)})
        for name, module in versions.items():
            lake_dir = out / f"lake-{name}"
            shutil.rmtree(lake_dir, ignore_errors=True)
            lake = open_lake(spark, str(lake_dir))
            lake.check_root(create=True)
            with PeakRSS() as mem:
                t = time.perf_counter()
                module.execute(spark, lake, batches, PipelineConfig(), progress=Progress(name, quiet=True))
                dt = time.perf_counter() - t
            results[name].append({"s": round(dt, 1), "peak_gb": round(mem.peak / 1e9, 2)})
            print(name, results[name][-1], flush=True)
    spark.stop()
    # after every run (reading the tables into this process would count in later peaks)
    digests = {name: _digest(out / f"lake-{name}") for name in versions}
    summary = {"results": results, "identical_bronze": digests["baseline"] == digests["current"]}
    (out / "results.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
