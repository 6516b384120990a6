"""The per-worker training loop that Ray Train runs on every rank.

Everything arrives through the ``config`` dict (run settings, model spec, tokenizer,
manifest hash, metrics path): no module globals. Rank 0 alone logs and writes metrics.
"""

from __future__ import annotations

import copy
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from echo.train.config import TrainConfig


def _say(line: str) -> None:
    """Rank 0's progress line, written once (Ray Train's patched print logs it twice)."""
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def _lora_export(cfg: TrainConfig, config: dict[str, Any]) -> Any:
    """Rank 0's writer of adapter/, hf/ (merged) and base/ from the full state dict."""
    from echo.train.lora import export_lora
    from echo.train.model import build_model

    def rebuild() -> Any:
        return build_model(config["model_spec"], config["tokenizer_info"], cfg.seed)

    def export(state: dict[str, Any], directory: Path) -> None:
        export_lora(state, rebuild, cfg, config["tokenizer"], directory,
                    save_base=config["model_spec"]["kind"] == "config")  # fmt: skip

    return export


def train_loop(config: dict[str, Any]) -> None:
    cfg = TrainConfig(**config["run"])
    if not cfg.use_gpu:
        os.environ.setdefault("DS_ACCELERATOR", "cpu")

    import deepspeed
    import ray.train as rt
    import torch
    import torch.distributed as dist

    from echo.train import checkpoint as ck
    from echo.train.config import REFERENCE_OBJECTIVES
    from echo.train.data import COLLATE, BatchPlan, EncodeSpec, examples_from_shard, primary_format
    from echo.train.deepspeed_config import build_ds_config, resolve_precision, total_steps
    from echo.train.lora import AdapterOffReference, prepare_model, trainable_params
    from echo.train.metrics import MetricsLog, device_peak_flops, mfu, read_metrics
    from echo.train.model import build_model, count_params
    from echo.train.objectives import KTOParams, objective_loss, trained_tokens

    ctx = rt.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    if rank != 0:  # rank 0 logs; the others only report errors
        import logging

        from deepspeed.utils import logger as ds_logger

        ds_logger.setLevel(logging.ERROR)
    if cfg.use_gpu:
        from ray.train.torch import get_device

        device = get_device()
        torch.cuda.set_device(device)
        device_name = torch.cuda.get_device_name(device)
    else:
        device, device_name = torch.device("cpu"), None

    # -- data: this rank's deterministic share, in memory -------------------------------
    formats: list[str] = list(config["formats"])
    enc = EncodeSpec(
        cfg.max_seq_len, cfg.max_completion_tokens, int(config["tokenizer_info"]["eos_token_id"])
    )
    examples = {
        fmt: examples_from_shard(rt.get_dataset_shard(fmt), config["tokenizer"], fmt, enc)
        for fmt in formats
    }
    primary = primary_format(cfg.objective)
    plans = {
        fmt: BatchPlan(len(ex), cfg.micro_batch_size, cfg.seed) for fmt, ex in examples.items()
    }
    steps_per_epoch = plans[primary].batches_per_epoch // cfg.grad_accum
    if steps_per_epoch < 1:
        raise ValueError(
            f"too few {primary} rows per worker ({len(examples[primary])}) for "
            f"micro_batch_size x grad_accum = {cfg.micro_batch_size * cfg.grad_accum}"
        )
    steps = total_steps(cfg, steps_per_epoch)
    stop = min(steps, cfg.stop_after_steps) if cfg.stop_after_steps > 0 else steps

    # -- model, reference, DeepSpeed engine ---------------------------------------------
    bf16_ok = bool(cfg.use_gpu and torch.cuda.is_bf16_supported())
    precision = resolve_precision(cfg, bf16_ok)
    ds_config = build_ds_config(cfg, world_size=world, steps=steps, precision=precision)
    model = prepare_model(
        build_model(config["model_spec"], config["tokenizer_info"], cfg.seed), cfg
    )  # + gradient checkpointing, LoRA adapters (echo.train.lora)
    n_params, n_trainable = count_params(model), trainable_params(model)
    ref_model: Any = None
    if cfg.objective in REFERENCE_OBJECTIVES and not cfg.lora:
        dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision, torch.float32)
        ref_model = copy.deepcopy(model).to(device=device, dtype=dtype).eval().requires_grad_(False)
    engine, _, _, scheduler = deepspeed.initialize(
        model=model,
        model_parameters=[p for p in model.parameters() if p.requires_grad],
        config=ds_config,
    )
    if cfg.objective in REFERENCE_OBJECTIVES and cfg.lora:
        ref_model = AdapterOffReference(engine, engine.module)  # the base: adapters off
    kto = KTOParams(cfg.kto_beta, cfg.kto_desirable_weight, cfg.kto_undesirable_weight)
    # DeepSpeed's warm-up schedulers start at iteration -1 (lr 0 for the first step):
    # position them on iteration 0 so step 1 trains at the schedule's first LR.
    scheduler.step(0)

    # -- resume ---------------------------------------------------------------------------
    start_step, cursor, history = 0, 0, []
    checkpoint = rt.get_checkpoint()
    if checkpoint is None and config.get("resume_from"):
        checkpoint = rt.Checkpoint(config["resume_from"])
    if checkpoint is not None:
        with checkpoint.as_directory() as d:
            meta = ck.load_state(engine, d, rank, config["manifest_sha256"], world)
            history = [
                r for r in read_metrics(Path(d) / "metrics.jsonl") if r["step"] <= meta["step"]
            ]
        start_step, cursor = int(meta["step"]), int(meta["data_cursor"]["micro_batches"])
    log = MetricsLog(config["metrics_path"], history) if rank == 0 else None
    if rank == 0 and start_step:
        _say(f"[echo.train] resumed at step {start_step} (data cursor {cursor} micro-batches)")

    peak = device_peak_flops(device_name, cfg.peak_tflops)
    streams = {fmt: plans[fmt].stream(examples[fmt], cursor) for fmt in formats}
    pad_id = int(config["tokenizer_info"]["pad_token_id"])
    engine.train()

    def to_device(batch: dict[str, Any]) -> dict[str, Any]:
        return {k: v.to(device) for k, v in batch.items()}

    before_step = config.get("before_step")  # train(cfg, before_step=, after_step=): the
    after_step = config.get("after_step")  # caller's hooks (after_step: rank 0 only)
    for step in range(start_step, stop):
        if before_step is not None:
            before_step(step, rank)
        t0 = time.perf_counter()
        sums: dict[str, float] = {}
        tokens = 0
        for _ in range(cfg.grad_accum):
            b = {f: to_device(COLLATE[f](examples[f], next(st), pad_id)) for f, st in streams.items()}
            loss, stats = objective_loss(
                cfg.objective,
                engine,
                ref_model,
                b.get("sft"),
                b.get("pref"),
                beta=cfg.dpo_beta,
                sft_weight=cfg.sft_weight,
                use_weights=cfg.use_pair_weights,
                kto_batch=b.get("kto"),
                kto=kto,
            )
            engine.backward(loss)
            engine.step()
            cursor += 1
            tokens += trained_tokens(cfg.objective, b.get("sft"), b.get("pref"), b.get("kto"))
            for k, v in stats.items():
                sums[k] = sums.get(k, 0.0) + v / cfg.grad_accum
        names = sorted(sums)
        red = torch.tensor(
            [sums[k] for k in names] + [float(tokens)], dtype=torch.float64, device=device
        )
        dist.all_reduce(red)
        elapsed = time.perf_counter() - t0
        global_tokens = float(red[-1])
        tok_s = global_tokens / max(elapsed, 1e-9)
        row: dict[str, Any] = {
            "step": step + 1,
            **{k: float(red[i]) / world for i, k in enumerate(names)},
        }
        row.update(
            lr=float(engine.get_lr()[0]),
            tokens=int(global_tokens),
            tokens_per_s=tok_s,
            step_time_s=elapsed,
            mfu=mfu(n_params, tok_s, peak, world),
            epoch=cursor // (plans[primary].batches_per_epoch),
        )
        if log is not None:
            log.write(row)
            if after_step is not None:
                after_step(row)
            if (step + 1) % cfg.log_every == 0 or step + 1 == stop:
                _say(log.progress_line(row, steps))

        last = step + 1 == stop
        if last or (cfg.checkpoint_every > 0 and (step + 1) % cfg.checkpoint_every == 0):
            with tempfile.TemporaryDirectory(prefix="echo-ckpt-") as tmp:
                d = Path(tmp)
                ck.save_state(engine, d, rank)
                if last:
                    ck.save_hf(engine, config["tokenizer"], d, rank, cfg.zero_stage,
                               _lora_export(cfg, config) if cfg.lora else None)  # fmt: skip
                if rank == 0:
                    per = plans[primary].batches_per_epoch
                    meta = {
                        "step": step + 1,
                        "total_steps": steps,
                        "finished": step + 1 == steps,
                        "data_cursor": {
                            "micro_batches": cursor,
                            "epoch": cursor // per,
                            "position": cursor % per,
                        },
                        "manifest_sha256": config["manifest_sha256"],
                        "config": config["run"],
                        "model_spec": config["model_spec"],
                        "world_size": world,
                        "precision": precision,
                        "params": n_params,
                        "trainable_params": n_trainable,
                    }
                    ck.write_meta(d, meta, ds_config)
                    assert log is not None
                    (d / "metrics.jsonl").write_text(
                        log.path.read_text(encoding="utf-8"), encoding="utf-8"
                    )
                    config["tokenizer"].save_pretrained(d / "tokenizer")
                rt.report(
                    {k: v for k, v in row.items() if v is not None},
                    checkpoint=rt.Checkpoint.from_directory(tmp),
                )
