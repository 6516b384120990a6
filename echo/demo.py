"""demo: the experience loop at demo size, or the data pipeline alone.

    python -m echo demo --out demo [--rounds 1 --seed 0]                 # the experience loop
    python -m echo demo --data-only --out demo [--users 20 --days 2 --batches 3]

By default this is ``python -m echo loop`` with the demo-size defaults of
``echo/loop/config.py`` (static baseline, deploy to simulated users, harvest their
refinements through Spark + Delta, fine-tune with Ray Train + DeepSpeed, measure on fresh
users; see docs/experiment.md): ``OUT/report.md``, ``OUT/report.html``, plots and
``OUT/results.json``. ``--data-only`` simulates telemetry with the noisy-oracle models and
runs the data pipeline on it batch by batch: ``OUT/events/batch-*``, the lake ``OUT/lake``
(bronze, silver, gold Delta tables), training shards ``OUT/shards``, and prints the
acceptance metrics per model.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

from echo.config import ConfigParser, LakeConfig, PipelineConfig, add_flag
from echo.errors import ConfigError
from echo.progress import Progress


def main(argv: Sequence[str] | None = None) -> int:
    from echo.jobs import shards
    from echo.jobs.common import open_job_lake
    from echo.jobs.runner import StageContext, run_stages
    from echo.pairs_config import PairsConfig, ShardsConfig
    from echo.simulate.api import simulate
    from echo.simulate.config import FaultConfig, SimConfig
    from echo.spark import spark_session

    parser = ConfigParser(prog="echo-pipeline demo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--out", default="demo", help="output directory (default: demo)")
    parser.add_argument("--seed", type=int, default=0)
    add_flag(parser, "quiet", "no progress lines")
    parser.add_argument("--rounds", type=int, default=1, help="Echo rounds of the loop")
    add_flag(parser, "data-only", "only simulate telemetry and run the data pipeline on it")
    parser.add_argument("--users", type=int, default=20, help="simulated users (--data-only)")
    parser.add_argument("--days", type=int, default=2, help="simulated days (--data-only)")
    parser.add_argument("--batches", type=int, default=3, help="delivery batches (--data-only)")
    parser.add_argument("--tracking-uri", default="",
                        help="MLflow tracking URI of the loop (default: MLFLOW_TRACKING_URI, else a "
                             "local store OUT/mlflow.db; 'none': no tracking)")  # fmt: skip
    args = parser.parse_args(list(argv or []))
    if not args.data_only:
        import os

        from echo.loop.cli import main as loop_main

        extra = ["--quiet"] if args.quiet else []
        uri = args.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI", "")
        if not uri:
            uri = f"sqlite:///{Path(args.out).resolve() / 'mlflow.db'}"
        if uri != "none":
            extra += ["--tracking-uri", uri]
        return loop_main(["--out", args.out, "--rounds", str(args.rounds), "--seed", str(args.seed), *extra])
    if args.users < 1 or args.days < 1 or args.batches < 1:
        raise ConfigError("--users, --days and --batches must be positive")
    out = Path(args.out).resolve()
    if (out / "lake").exists():
        raise ConfigError(f"{out} already holds a demo lake; remove it or pass another --out")
    progress = Progress("demo", quiet=args.quiet)
    sim = simulate(
        SimConfig(users=args.users, days=args.days, seed=args.seed, batches=args.batches),
        FaultConfig(),
        out=out / "events",
        progress=not args.quiet,
    )
    progress.step(f"simulated {sim.events:,} events in {len(sim.batch_dirs)} batches", records=sim.records)
    lake_cfg = LakeConfig(lake=str(out / "lake"))
    cfg, pcfg = PipelineConfig(), PairsConfig()
    reports = []
    with spark_session("echo-demo") as spark, open_job_lake(spark, lake_cfg, create=True, command="demo", quiet=args.quiet) as lake:
        for batch in sim.batch_dirs:
            ctx = StageContext(spark, lake, lake_cfg, cfg, pcfg, events=(str(batch),), quiet=args.quiet)
            reports.append({"batch": batch.name, **run_stages(ctx)})
        scfg = ShardsConfig(out=str(out / "shards"))
        r_shards = shards.execute(spark, lake, lake_cfg, scfg, progress=Progress("shards", quiet=args.quiet))
        from echo.lake.tables import ACCEPTANCE_METRICS
        from echo.metrics import SUM_COLUMNS, acceptance_by_model

        gold = lake.read(ACCEPTANCE_METRICS).select("model_id", *SUM_COLUMNS).toPandas()
        per_model = acceptance_by_model(gold.astype(object).where(gold.notna(), None).to_dict("list"))
    (out / "demo_report.json").write_text(json.dumps({"batches": reports, "shards": r_shards}, indent=2, default=str))
    print("\nAcceptance by model (gold/acceptance_metrics):")
    print(f"  {'model':<22}{'shown':>8}{'accepted':>10}{'rate':>8}{'kept':>7}{'refined':>9}")
    for model, row in per_model.items():
        print(f"  {model:<22}{row['shown']:>8}{row['accepted']:>10}{row['acceptance'] or 0:>8.1%}"
              f"{row['kept']:>7}{row['refined']:>9}")  # fmt: skip
    print(f"\nlake: {out / 'lake'}\nshards: {out / 'shards'} (manifest.json)\nreport: {out / 'demo_report.json'}")
    return 0
