"""``python -m echo loop --rounds R --out DIR``: the experience loop (docs/experiment.md)."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from echo.config import ConfigParser, add_config_args, resolve
from echo.loop.config import LoopConfig
from echo.tracking import TrackingConfig, tracked


def build_parser() -> argparse.ArgumentParser:
    p = ConfigParser(
        prog="echo-pipeline loop",
        description="Static baseline, then R rounds: deploy to simulated users, harvest "
        "refinements through the pipeline, fine-tune (Ray Train), measure on fresh users.",
    )
    add_config_args(p, LoopConfig, TrackingConfig)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    cfg, tracking = resolve(args, LoopConfig, TrackingConfig)
    from echo.loop.report import write_report
    from echo.loop.rounds import run_loop

    with tracked(tracking, f"loop-{cfg.rounds}-rounds", command="loop") as run:
        results = run_loop(cfg)
        paths = write_report(results, cfg.out)
        if run is not None:
            from echo.tracking import log_loop

            log_loop(run, cfg.to_dict(), results, paths)
    for row in results["table"]:
        print(f"round {row['round']} {row['model']:<20} acceptance {row['acceptance']:6.1%} "
              f"[{row['ci95'][0]:.1%}, {row['ci95'][1]:.1%}] of {row['shown']:,}")  # fmt: skip
    for v in results["verdicts"]:
        print(v)
    mark = {True: "met", False: "NOT met", None: "not measured"}
    for g in results["goals"]:
        print(f"goal {mark[g['met']]}: {g['goal']} ({g['why']})")
    print(f"report: {paths['md']} ({paths['html']}); wall time {results['timings']['total_s']:.0f} s")
    return 0
