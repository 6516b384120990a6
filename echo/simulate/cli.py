"""``python -m echo simulate``: write simulated telemetry, ground truth and a summary.

    python -m echo simulate --users 20 --days 2 --seed 1 --out demo/events
    python -m echo simulate --users 5 --days 1 --faults heavy --format parquet --out /tmp/sim
    python -m echo simulate --out /tmp/sim --model-path ./tiny-lm --model-id tiny-v1

Progress lines go to stderr; the statistical summary to stdout.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from echo.config import ConfigParser, add_config_args, add_flag, resolve
from echo.simulate.config import FaultConfig, SimConfig


def build_parser() -> argparse.ArgumentParser:
    parser = ConfigParser(
        prog="echo-pipeline simulate",
        description="Simulate users writing code with a completion model; write contract events.",
    )
    parser.add_argument(
        "--out",
        required=True,
        help="output directory (batch-0000/..., truth.parquet, summary.json)",
    )
    parser.add_argument(
        "--model-path", default="", help="a LOCAL causal LM: use it instead of the noisy oracles"
    )
    parser.add_argument(
        "--model-id", default="", help="model id of --model-path (default: its folder name)"
    )
    parser.add_argument(
        "--max-new-tokens", type=int, default=32, help="generation budget of --model-path"
    )
    parser.add_argument(
        "--max-lines", type=int, default=1, help="line budget of --model-path proposals"
    )
    add_flag(parser, "fim", "fill-in-the-middle prompts for --model-path (--no-fim: plain left to right)", default=True)
    add_flag(parser, "quiet", "no progress lines")
    add_config_args(parser, SimConfig, FaultConfig)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    sim, faults = resolve(args, SimConfig, FaultConfig)
    from echo.simulate.api import simulate

    proposer = None
    if args.model_path:
        from echo.simulate.proposers import TransformersProposer

        proposer = TransformersProposer(
            args.model_path,
            args.model_id or None,
            fim=args.fim,
            max_new_tokens=args.max_new_tokens,
            max_lines=args.max_lines,
        )
    result = simulate(sim, faults, out=args.out, proposer=proposer, progress=not args.quiet)
    print(result.stats_text)
    print(
        f"wrote {result.records:,} records in {len(result.batch_dirs)} batches, truth and summary to {result.out} "
        f"in {result.elapsed_s:.1f}s",
        file=sys.stderr,
    )
    return 0
