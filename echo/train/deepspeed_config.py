"""The DeepSpeed config, built in code from the run config (and dumped into checkpoints)."""

from __future__ import annotations

from typing import Any

from echo.train.config import TrainConfig


def resolve_precision(cfg: TrainConfig, bf16_supported: bool) -> str:
    """fp32 on CPU; on GPU bf16 where the hardware has it, else fp16 (unless forced)."""
    if not cfg.use_gpu:
        return "fp32"
    if cfg.precision != "auto":
        return cfg.precision
    return "bf16" if bf16_supported else "fp16"


def total_steps(cfg: TrainConfig, steps_per_epoch: int) -> int:
    return cfg.max_steps if cfg.max_steps > 0 else max(1, cfg.epochs * steps_per_epoch)


def scheduler_block(cfg: TrainConfig, steps: int) -> dict[str, Any]:
    # DeepSpeed wants warmup_num_steps >= 1: "no warm-up" is one step from lr to lr.
    warm = max(1, min(cfg.warmup_steps, max(steps - 1, 1)))
    start = 0.0 if cfg.warmup_steps > 0 else cfg.lr
    if cfg.lr_schedule == "constant":
        return {
            "type": "WarmupLR",
            "params": {
                "warmup_min_lr": start,
                "warmup_max_lr": cfg.lr,
                "warmup_num_steps": warm,
                "warmup_type": "linear",
            },
        }
    if cfg.lr_schedule == "linear":
        # WarmupDecayLR decays linearly to 0; min_lr_ratio is honoured by cosine only.
        return {
            "type": "WarmupDecayLR",
            "params": {
                "warmup_min_lr": start,
                "warmup_max_lr": cfg.lr,
                "warmup_num_steps": warm,
                "total_num_steps": steps,
                "warmup_type": "linear",
            },
        }
    return {
        "type": "WarmupCosineLR",
        "params": {
            "total_num_steps": steps,
            "warmup_num_steps": warm,
            "warmup_min_ratio": 0.0 if cfg.warmup_steps > 0 else 1.0,
            "cos_min_ratio": cfg.min_lr_ratio,
            "warmup_type": "linear",
        },
    }


def build_ds_config(
    cfg: TrainConfig, *, world_size: int, steps: int, precision: str
) -> dict[str, Any]:
    """ZeRO stage, precision, batch sizes, accumulation, clipping, AdamW and LR schedule.

    The optimizer is torch's AdamW (``torch_adam``): the same code on CPU (no fused
    kernels to compile) and GPU; ZeRO treats it as an untested client optimizer, which
    the flag below allows.
    """
    zero: dict[str, Any] = {"stage": cfg.zero_stage}
    if cfg.zero_stage >= 2:
        zero.update(
            {
                "contiguous_gradients": True,
                "overlap_comm": cfg.use_gpu,
                "reduce_scatter": True,
                "reduce_bucket_size": 5e8,
                "allgather_bucket_size": 5e8,
            }
        )
    if cfg.zero_stage == 3:
        zero.update(
            {
                "stage3_gather_16bit_weights_on_model_save": True,
                "stage3_prefetch_bucket_size": 5e7,
                "stage3_param_persistence_threshold": 1e5,
            }
        )
    return {
        "train_micro_batch_size_per_gpu": cfg.micro_batch_size,
        "gradient_accumulation_steps": cfg.grad_accum,
        "train_batch_size": cfg.micro_batch_size * cfg.grad_accum * world_size,
        "gradient_clipping": cfg.clip_grad,
        "zero_optimization": zero,
        "zero_allow_untested_optimizer": True,
        "bf16": {"enabled": precision == "bf16"},
        "fp16": {"enabled": precision == "fp16", "loss_scale": 0, "initial_scale_power": 16},
        "optimizer": {
            "type": "AdamW",
            "params": {
                "lr": cfg.lr,
                "betas": [0.9, 0.95],
                "eps": 1e-8,
                "weight_decay": cfg.weight_decay,
                "torch_adam": True,
            },
        },
        "scheduler": scheduler_block(cfg, steps),
        "steps_per_print": 1 << 30,
        "wall_clock_breakdown": False,
    }
