"""Driver side of a training run: checks, tokenizer, Ray Data, ``TorchTrainer``, result."""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from echo.errors import EchoError
from echo.train.config import TrainConfig
from echo.train.data import ShardDataError, formats_for, open_shards, ray_dataset, read_table


class TrainError(EchoError):
    """The training run failed (the message is the workers' root cause, one line)."""


@dataclass
class TrainResult:
    model_path: str  # final model, save_pretrained format (+ tokenizer); merged with --lora
    checkpoint_path: str  # the last Ray Train checkpoint (storage path)
    steps: int
    finished: bool  # False when --stop-after-steps ended the run early
    manifest_sha256: str
    metrics: list[dict[str, Any]] = field(default_factory=list)
    adapter_path: str | None = None  # --lora: the peft adapter (its base recorded in it)
    trainable_params: int | None = None

    @property
    def final(self) -> dict[str, Any]:
        return self.metrics[-1] if self.metrics else {}

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _texts(root: str, entries: dict[str, list[Any]], fim: dict[str, str]) -> Iterator[str]:
    """Shard text for training a BPE (sentinels stripped from the prompts)."""
    for fmt, sel in entries.items():
        cols = ["prompt", "chosen", "rejected"] if fmt == "pref" else ["prompt", "completion"]
        table = read_table(root, sel, cols)
        for col in cols:
            for text in table.column(col).to_pylist():
                if text:
                    for s in fim.values():
                        text = text.replace(s, "\n")
                    yield text


def _ensure_ray(cfg: TrainConfig) -> None:
    import ray

    if ray.is_initialized():
        return
    from echo.logs import quiet_ray_loggers, route_ray

    env = {"DS_ACCELERATOR": "cpu"} if not cfg.use_gpu else {}
    quiet_ray_loggers()
    ray.init(
        address=os.environ.get("RAY_ADDRESS") or None,
        runtime_env={"env_vars": env},
    )
    route_ray()  # Ray's and its workers' logging to the log file; progress lines stay


def _root_cause(exc: BaseException) -> str:
    text = str(exc)
    seen = exc
    while seen.__cause__ is not None:
        seen = seen.__cause__
        text = str(seen) or text
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    line = next(
        (ln for ln in reversed(lines) if "Error" in ln or "error" in ln), lines[-1] if lines else ""
    )
    # "echo.train.checkpoint.CheckpointError: msg" -> "msg" for echo's own errors
    m = re.match(r"^echo\.[\w.]+Error: (.*)$", line)
    return (m.group(1) if m else line or type(exc).__name__)[:400]


def _check_resumable(cfg: TrainConfig, manifest_sha: str) -> None:
    """Refuse, before any worker starts, a checkpoint this run cannot continue from.

    Checks ``--resume-from`` and, on local storage, the checkpoints the run already has
    under ``STORAGE/RUN_NAME`` (the ones Ray Train would hand to the workers): same
    shards, same worker count. Object-storage checkpoints are checked on the workers.
    """
    from echo.train.checkpoint import META, check_meta, read_meta

    if cfg.resume_from and "://" not in cfg.resume_from:
        check_meta(read_meta(cfg.resume_from), cfg.resume_from, manifest_sha, cfg.num_workers)
    if "://" not in cfg.storage_path:
        for path in sorted((Path(cfg.storage_path) / cfg.run_name).glob(f"checkpoint_*/{META}")):
            check_meta(read_meta(path.parent), path.parent, manifest_sha, cfg.num_workers)


#: ``before_step(step, rank)``: called on every worker before each optimizer step (0-based)
StepHook = Callable[[int, int], None]
#: ``after_step(row)``: called on rank 0 with each step's metrics row (as in metrics.jsonl)
MetricsHook = Callable[[dict[str, Any]], None]


def train(
    cfg: TrainConfig, *, before_step: StepHook | None = None, after_step: MetricsHook | None = None
) -> TrainResult:
    """Run a fine-tuning job on the shards; returns the final model path and metrics.

    The hooks travel to the workers pickled. ``before_step(step, rank)`` runs on every
    worker before each optimizer step: a place to observe a run or, in tests, to make a
    worker fail at a chosen step (an exception it raises fails that worker).
    ``after_step(row)`` runs on rank 0 when a step's metrics are known (loss, lr,
    tokens/s, MFU, ...): live experiment tracking (:class:`echo.tracking.LiveMetrics`)."""
    from echo.train.model import build_tokenizer, resolve_model_spec, tokenizer_info

    fmts = formats_for(cfg.objective)
    manifest, entries = open_shards(cfg.shards, fmts, "train")
    for fmt, sel in entries.items():
        per_worker = sum(e.rows for e in sel) // cfg.num_workers
        if -(-per_worker // cfg.micro_batch_size) < cfg.grad_accum:
            raise ShardDataError(
                f"{fmt}/train has {sum(e.rows for e in sel)} rows: too few for {cfg.num_workers} "
                f"workers x {cfg.micro_batch_size} pairs x {cfg.grad_accum} accumulation steps"
            )
    spec = resolve_model_spec(cfg.model)
    out = Path(cfg.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    storage = cfg.storage_path or str(out / "ray")
    if "://" not in storage:
        storage = str(Path(storage).resolve())
    cfg = cfg.replace(storage_path=storage, shards=str(Path(cfg.shards).resolve()), out=str(out))

    _check_resumable(cfg, manifest.sha256)

    tok = build_tokenizer(spec, lambda: _texts(cfg.shards, entries, manifest.fim), manifest.fim)
    tok.save_pretrained(out / "tokenizer")

    import ray.train
    from ray.train.torch import TorchConfig, TorchTrainer

    from echo.train.data import deterministic_split_config
    from echo.train.worker import train_loop

    _ensure_ray(cfg)
    datasets = {fmt: ray_dataset(cfg.shards, entries[fmt], fmt) for fmt in fmts}
    loop_config = {
        "run": cfg.to_dict(),
        "model_spec": spec.to_dict(),
        "tokenizer": tok,
        "tokenizer_info": tokenizer_info(tok),
        "manifest_sha256": manifest.sha256,
        "formats": list(fmts),
        "metrics_path": str(out / "metrics.jsonl"),
        "resume_from": cfg.resume_from,
        "before_step": before_step,
        "after_step": after_step,
    }
    resources = {"GPU": cfg.gpus_per_worker} if cfg.use_gpu else {}
    resources["CPU"] = cfg.cpus_per_worker
    trainer = TorchTrainer(
        train_loop,
        train_loop_config=loop_config,
        scaling_config=ray.train.ScalingConfig(
            num_workers=cfg.num_workers, use_gpu=cfg.use_gpu, resources_per_worker=resources
        ),
        run_config=ray.train.RunConfig(
            name=cfg.run_name,
            storage_path=storage,
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=max(cfg.keep_checkpoints, 1)),
            # on a worker failure, restart the worker group from the latest checkpoint
            failure_config=ray.train.FailureConfig(max_failures=cfg.max_failures),
        ),
        torch_config=TorchConfig(backend="nccl" if cfg.use_gpu else "gloo"),
        datasets=datasets,
        dataset_config=deterministic_split_config(),
    )
    try:
        result = trainer.fit()
    except ray.train.TrainingFailedError as exc:
        raise TrainError(f"training failed: {_root_cause(exc)}") from None
    if result.checkpoint is None:
        raise TrainError("training ended without a checkpoint")
    return _finish(cfg, out, result.checkpoint, manifest.sha256)


def _copy_lora(checkpoint: Path, out: Path, meta: dict[str, Any]) -> str | None:
    """--lora: ``OUT/adapter`` (and ``OUT/base`` for config-built models) from the final
    checkpoint, the adapter pointing at its base; None for full fine-tuning."""
    from echo.train.lora import ADAPTER_DIR, BASE_DIR, point_adapter_at_base

    if not (checkpoint / ADAPTER_DIR).is_dir():
        return None
    for name in (ADAPTER_DIR, BASE_DIR):
        if (out / name).exists():
            shutil.rmtree(out / name)
        if (checkpoint / name).is_dir():
            shutil.copytree(checkpoint / name, out / name)
    spec = meta.get("model_spec") or {}
    base = str(out / BASE_DIR) if (out / BASE_DIR).is_dir() else str(spec.get("source", ""))
    point_adapter_at_base(out / ADAPTER_DIR, base)
    return str(out / ADAPTER_DIR)


def _finish(cfg: TrainConfig, out: Path, checkpoint: Any, manifest_sha: str) -> TrainResult:
    from echo.train.checkpoint import HF_DIR, read_meta
    from echo.train.metrics import read_metrics

    model_dir = out / "model"
    with checkpoint.as_directory() as d:
        meta = read_meta(d)
        if model_dir.exists():
            shutil.rmtree(model_dir)
        shutil.copytree(Path(d) / HF_DIR, model_dir)
        metrics = read_metrics(Path(d) / "metrics.jsonl")
        # rank 0 may have run on another node: the driver's copy comes from the checkpoint
        shutil.copy(Path(d) / "metrics.jsonl", out / "metrics.jsonl")
        shutil.copy(Path(d) / "ds_config.json", out / "ds_config.json")
        adapter = _copy_lora(Path(d), out, meta)
    res = TrainResult(
        model_path=str(model_dir),
        checkpoint_path=str(checkpoint.path),
        steps=int(meta["step"]),
        finished=bool(meta["finished"]),
        manifest_sha256=manifest_sha,
        metrics=metrics,
        adapter_path=adapter,
        trainable_params=meta.get("trainable_params"),
    )
    summary = {k: v for k, v in res.to_dict().items() if k != "metrics"}
    summary["final"] = res.final
    summary["config"] = cfg.to_dict()
    (out / "train_result.json").write_text(
        json.dumps(summary, indent=2, default=str), encoding="utf-8"
    )
    return res
