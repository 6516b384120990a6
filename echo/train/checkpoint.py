"""Checkpoint directories (one per reported Ray Train checkpoint).

Layout (rank 0 writes the shared files; every rank adds its ZeRO partition)::

    state/                      DeepSpeed: weights, optimizer and LR-scheduler state
    rng/rank-<r>.pt             each rank's torch RNG state (dropout replays exactly)
    meta.json                   step, data cursor, resolved config, manifest hash
    ds_config.json              the DeepSpeed config of the run
    metrics.jsonl               the metrics so far
    tokenizer/                  the run's tokenizer
    hf/                         final checkpoint only: save_pretrained model + tokenizer
                                (with --lora: the merged model)
    adapter/                    final checkpoint, --lora only: the peft adapter + tokenizer
    base/                       final checkpoint, --lora on a model built from a config
                                file only: the frozen base the adapter applies to
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from echo.errors import EchoError

TAG = "state"
META = "meta.json"
HF_DIR = "hf"


class CheckpointError(EchoError):
    """A checkpoint cannot be resumed by this run."""


def save_state(engine: Any, directory: Path, rank: int) -> None:
    import torch

    engine.save_checkpoint(str(directory), tag=TAG)
    (directory / "rng").mkdir(exist_ok=True)
    torch.save(torch.get_rng_state(), directory / "rng" / f"rank-{rank}.pt")


def write_meta(directory: Path, meta: dict[str, Any], ds_config: dict[str, Any]) -> None:
    (directory / META).write_text(
        json.dumps(meta, indent=2, sort_keys=True, default=str), encoding="utf-8"
    )
    (directory / "ds_config.json").write_text(
        json.dumps(ds_config, indent=2, sort_keys=True), encoding="utf-8"
    )


def read_meta(directory: str | Path) -> dict[str, Any]:
    path = Path(directory) / META
    if not path.is_file():
        raise CheckpointError(f"{directory} is not an echo training checkpoint (no {META})")
    meta: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return meta


def check_meta(
    meta: dict[str, Any], directory: str | Path, manifest_sha256: str, world_size: int
) -> None:
    """Refuse a checkpoint of other shards or of another number of workers (one line).

    The world size is fixed for a lineage of checkpoints: the DeepSpeed state holds one
    ZeRO partition per rank and the data cursor counts micro-batches of a split into
    ``world_size`` equal parts, so neither carries over to another worker count.
    """
    if meta.get("manifest_sha256") != manifest_sha256:
        raise CheckpointError(
            f"checkpoint {directory} was trained on other shards (manifest "
            f"{str(meta.get('manifest_sha256'))[:12]} != {manifest_sha256[:12]})"
        )
    saved = meta.get("world_size")
    if saved is not None and int(saved) != world_size:
        raise CheckpointError(
            f"checkpoint {directory} was written by {saved} workers but this run has "
            f"--num-workers {world_size} (ZeRO partitions and the data split depend on it): "
            f"resume with --num-workers {saved} or start a new --run-name"
        )


def load_state(
    engine: Any, directory: str | Path, rank: int, manifest_sha256: str, world_size: int
) -> dict[str, Any]:
    """Restore weights, optimizer, scheduler and RNG; refuse a checkpoint of other data
    or of another worker count."""
    import torch

    meta = read_meta(directory)
    check_meta(meta, directory, manifest_sha256, world_size)
    load_path, _ = engine.load_checkpoint(
        str(directory), tag=TAG, load_optimizer_states=True, load_lr_scheduler_states=True
    )
    if load_path is None:
        raise CheckpointError(f"checkpoint {directory} has no DeepSpeed state")
    rng = Path(directory) / "rng" / f"rank-{rank}.pt"
    if rng.is_file():
        torch.set_rng_state(torch.load(rng))
    return meta


def save_hf(
    engine: Any,
    tokenizer: Any,
    directory: Path,
    rank: int,
    zero_stage: int,
    export: Callable[[dict[str, Any], Path], None] | None = None,
) -> None:
    """Full model in Hugging Face format (ZeRO-3 gathers the partitions first); with
    ``export`` (LoRA, see :func:`echo.train.lora.export_lora`) rank 0 hands it the full
    state dict instead."""
    state = engine._zero3_consolidated_16bit_state_dict() if zero_stage == 3 else None
    if rank != 0:
        return
    if export is not None:
        export(state if state is not None else engine.module.state_dict(), directory)
        return
    model = engine.module
    target = directory / HF_DIR
    if state is not None:
        model.save_pretrained(target, state_dict=state)
    else:
        model.save_pretrained(target)
    tokenizer.save_pretrained(target)
