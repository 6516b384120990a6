"""run: ingest, sessionize, track and pairs, in order, in one Spark session.

    python -m echo run --events PATH [PATH...] --lake DIR [settings]
    spark-submit jobs/run.py --events PATH [PATH...] --lake DIR
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from echo.config import PipelineConfig
from echo.jobs import ingest, sessionize, track
from echo.jobs.common import config_json, emit_report, job_parser, open_job_lake, parse
from echo.pairs_config import PairsConfig
from echo.progress import Progress
from echo.sources import list_inputs
from echo.spark import spark_session


def main(argv: Sequence[str] | None = None) -> int:
    from echo.jobs import pairs

    parser = job_parser("echo-pipeline run", __doc__ or "", PipelineConfig, PairsConfig)
    ingest.add_events_arg(parser)
    args, (lake_cfg, cfg, pairs_cfg) = parse(parser, argv, PipelineConfig, PairsConfig)
    list_inputs(args.events)  # fail fast on missing inputs, before any session or table
    report: dict[str, Any] = {}
    with spark_session("echo-run", master=lake_cfg.master) as spark:
        lake = open_job_lake(spark, lake_cfg, create=True, quiet=args.quiet)
        report["ingest"] = ingest.execute(
            spark, lake, args.events, cfg, progress=Progress("ingest", quiet=args.quiet),
            config_text=config_json(lake_cfg, cfg, pairs_cfg),
        )  # fmt: skip
        report["sessionize"] = sessionize.execute(
            spark, lake, lake_cfg, cfg, progress=Progress("sessionize", quiet=args.quiet)
        )
        report["track"] = track.execute(spark, lake, lake_cfg, cfg, progress=Progress("track", quiet=args.quiet))
        report["pairs"] = pairs.execute(spark, lake, lake_cfg, pairs_cfg, progress=Progress("pairs", quiet=args.quiet))
    emit_report("run", report, args)
    return 0
