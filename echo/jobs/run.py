"""run: ingest, sessionize, track and pairs, in order, in one Spark session.

    python -m echo run --events PATH [PATH...] --lake DIR [settings]
    spark-submit jobs/run.py --events PATH [PATH...] --lake DIR
"""

from __future__ import annotations

from collections.abc import Sequence

from echo.config import PipelineConfig
from echo.jobs import ingest
from echo.jobs.common import emit_report, job_parser, open_job_lake, parse
from echo.jobs.runner import StageContext, run_stages
from echo.pairs_config import PairsConfig
from echo.sources import list_inputs
from echo.spark import spark_session


def main(argv: Sequence[str] | None = None) -> int:
    parser = job_parser("echo-pipeline run", __doc__ or "", PipelineConfig, PairsConfig)
    ingest.add_events_arg(parser)
    args, (lake_cfg, cfg, pairs_cfg) = parse(parser, argv, PipelineConfig, PairsConfig)
    list_inputs(args.events)  # fail fast on missing inputs, before any session or table
    with (
        spark_session("echo-run", master=lake_cfg.master) as spark,
        open_job_lake(spark, lake_cfg, create=True, command="run", quiet=args.quiet) as lake,
    ):
        ctx = StageContext(spark, lake, lake_cfg, cfg, pairs_cfg, events=tuple(args.events), quiet=args.quiet)
        report = run_stages(ctx)
    emit_report("run", report, args)
    return 0
