"""``python -m echo import``: the command behind :mod:`echo.importers`."""


from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from echo.config import (
    ConfigParser,
    Validated,
    add_config_args,
    add_flag,
    resolve,
    setting,
    to_dict,
)
from echo.errors import ConfigError, InputError

SOURCES = ("continue", "tabby")


@dataclass(frozen=True)
class ImportConfig(Validated):
    """Settings of ``import`` (what the client logs do not say)."""

    model_id: str = setting("tabby", "model_id of Tabby's proposals (its event log does not name the model)")
    anonymous_user: str = setting(
        "anonymous", "user of Tabby events logged without one (a server without authentication)"
    )
    strict: bool = setting(False, "fail (exit 2) when any client record is refused")

    def validate(self) -> None:
        if not self.model_id:
            raise ConfigError("--model-id must not be empty")
        if not self.anonymous_user:
            raise ConfigError("--anonymous-user must not be empty")


def build_parser() -> argparse.ArgumentParser:
    parser = ConfigParser(prog="echo-pipeline import", description="Convert Continue or Tabby client logs into contract events (JSON Lines) for ingest.")
    parser.add_argument("--from", dest="source", required=True, choices=SOURCES, help="the client that wrote the logs")
    parser.add_argument("src", nargs="+", metavar="SRC", help="log files or directories (*.jsonl, *.json)")
    parser.add_argument("--out", required=True, help="output directory (events.jsonl, refused.jsonl, import_report.json)")
    add_flag(parser, "quiet", "no progress output")
    parser.add_argument("--report", default=None, help="also write the run report (JSON) to this file")
    add_config_args(parser, ImportConfig)
    return parser


def run_import(source: str, paths: Sequence[str], out: str, cfg: ImportConfig | None = None) -> dict[str, Any]:
    """Convert the logs under ``paths`` and write ``out``; returns the report."""
    from echo.importers import continuedev, tabby
    from echo.importers.common import Tally, list_logs, read_records, write_output

    cfg = cfg or ImportConfig()
    files = list_logs(paths)
    tally = Tally()
    records = read_records(files)
    if source == "continue":
        events = continuedev.convert(records, tally=tally)
    elif source == "tabby":
        events = tabby.convert(records, tally=tally, model_id=cfg.model_id, anonymous_user=cfg.anonymous_user)
    else:
        raise ConfigError(f"--from {source!r} is not one of {', '.join(SOURCES)}")
    if not tally.balanced():  # an importer bug, never the user's input
        raise RuntimeError(f"import counts do not add up: {tally.report()}")
    report: dict[str, Any] = {"source": source, "files": len(files), **tally.report(), "config": to_dict(cfg)}
    report["outputs"] = write_output(out, events, tally, report)
    return report


def main(argv: Sequence[str] | None = None) -> int:
    from echo.jobs.common import emit_report
    from echo.progress import Progress

    parser = build_parser()
    args = parser.parse_args(argv)
    (cfg,) = resolve(args, ImportConfig)
    progress = Progress("import", quiet=args.quiet)
    report = run_import(args.source, args.src, args.out, cfg)
    progress.step(f"{report['read']:,} {args.source} records -> {report['events']:,} events in {args.out}")
    emit_report("import", report, args)
    if cfg.strict and report["refused"]:
        first = report["refused_by_reason"]
        raise InputError(
            f"{report['refused']} record(s) refused ({', '.join(f'{k}={v}' for k, v in first.items())}); "
            f"see {report['outputs']['refused']}"
        )
    return 0
