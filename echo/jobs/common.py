"""What every job shares: argument parsing, the session, the lake, the report."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from echo.config import ConfigParser, LakeConfig, add_config_args, add_flag, resolve, to_dict
from echo.errors import ConfigError

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from echo.lake import Lake


def job_parser(prog: str, description: str, *sections: type) -> argparse.ArgumentParser:
    parser = ConfigParser(prog=prog, description=description)
    add_config_args(parser, LakeConfig, *sections)
    add_flag(parser, "quiet", "no progress output")
    parser.add_argument("--report", default=None, help="also write the run report (JSON) to this file")
    return parser


def parse(
    parser: argparse.ArgumentParser, argv: Sequence[str] | None, *sections: type
) -> tuple[argparse.Namespace, tuple[Any, ...]]:
    args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    configs = resolve(args, LakeConfig, *sections)  # each section validates itself
    if not configs[0].lake:
        raise ConfigError("--lake DIR is required (a local path or an object-store URI)")
    return args, configs


@contextlib.contextmanager
def open_job_lake(
    spark: SparkSession, cfg: LakeConfig, *, create: bool = False, command: str = "run", quiet: bool = False
) -> Iterator[Lake]:
    """The lake of a writing command, held for it alone: check the root (``create`` a new
    lake), take the lake's lease (one writer at a time; refuse or wait for a live holder),
    check the lake's invariants (``--buckets``), and give the lease back at the end. Prints
    one line on stderr saying which Delta backend runs and why (unless ``quiet``)."""
    from echo.lake import open_lake
    from echo.lake.lease import hold

    lake = open_lake(spark, cfg.lake, cfg.lake_backend)
    lake.check_root(create=create)
    if not cfg.buckets and lake.lease_store().read() is None and lake.has_data_tables():
        raise ConfigError(
            f"lake {lake.root} predates recorded buckets: pass --buckets N once, with the "
            "value it was built with (16 unless you chose another)"
        )
    if not quiet:
        print(f"[lake] backend {lake.backend_name} ({lake.backend_reason})", file=sys.stderr, flush=True)
    lease = hold(lake, command, buckets=cfg.buckets, wait_s=cfg.wait_s)
    try:
        yield lake
    finally:
        lease.release()
        lake.lease = None


def emit_report(name: str, report: dict[str, Any], args: argparse.Namespace) -> None:
    """Print the run report as one JSON line on stdout (and to --report FILE)."""
    text = json.dumps({"stage": name, **report}, sort_keys=True, default=str)
    print(text, flush=True)
    if getattr(args, "report", None):
        with open(args.report, "w", encoding="utf-8") as fh:
            fh.write(text + "\n")


def config_json(*configs: Any) -> str:
    return json.dumps(to_dict(*configs), sort_keys=True)


def stage_main(
    argv: Sequence[str] | None,
    *,
    stage: str,
    doc: str,
    section: type,
    execute: Any,
) -> int:
    """``main`` of a stage that reads and writes an existing lake: parse, configure, get
    the session, ``execute(spark, lake, lake_cfg, cfg, progress=...)``, report, stop."""
    from echo.progress import Progress
    from echo.spark import spark_session

    parser = job_parser(f"echo-pipeline {stage}", doc, section)
    args, (lake_cfg, cfg) = parse(parser, argv, section)
    progress = Progress(stage, quiet=args.quiet)
    with spark_session(f"echo-{stage}", master=lake_cfg.master) as spark, open_job_lake(spark, lake_cfg, command=stage, quiet=args.quiet) as lake:
        report = execute(spark, lake, lake_cfg, cfg, progress=progress)
    emit_report(stage, report, args)
    return 0
