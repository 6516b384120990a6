"""``python -m echo train``: fine-tune a causal LM on the shards (Ray Train + DeepSpeed)."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from echo.config import ConfigParser, add_config_args, resolve
from echo.tracking import TrackingConfig, tracked
from echo.train.config import TrainConfig


def build_parser() -> argparse.ArgumentParser:
    p = ConfigParser(
        prog="echo-pipeline train",
        description="Fine-tune a causal LM on the shards with Ray Train workers and DeepSpeed.",
    )
    add_config_args(p, TrainConfig, TrackingConfig)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    cfg, tracking = resolve(args, TrainConfig, TrackingConfig)
    from echo.train.trainer import train

    with tracked(tracking, cfg.run_name, command="train") as run:
        if run is not None:
            from echo.tracking import log_train_start

            log_train_start(run, cfg.to_dict(), cfg.shards)
        result = train(cfg, after_step=run.live_metrics() if run is not None else None)
        if run is not None:
            from echo.tracking import log_train_result

            log_train_result(run, result)
    first = result.metrics[0]["loss"] if result.metrics else float("nan")
    last = result.final.get("loss", float("nan"))
    state = "finished" if result.finished else "stopped early (rerun to resume)"
    print(
        f"train: {result.steps} steps {state}; loss {first:.4f} -> {last:.4f}; "
        f"model -> {result.model_path}; checkpoint -> {result.checkpoint_path}"
    )
    return 0
