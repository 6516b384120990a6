"""Settings of a training run (``python -m echo train``), one frozen dataclass.

Every field is also a ``--flag`` and a YAML key (see :mod:`echo.config`). The resolved
config travels to the Ray workers as a plain dict and is written into every checkpoint.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from echo.config import Validated, setting
from echo.errors import ConfigError

OBJECTIVES = ("sft", "dpo", "sft+dpo", "kto", "sft+kto")
#: Objectives that compare the policy with a frozen reference model.
REFERENCE_OBJECTIVES = ("dpo", "sft+dpo", "kto", "sft+kto")


@dataclass(frozen=True)
class TrainConfig(Validated):
    """A fine-tuning run: data, model, scale, optimization, checkpoints, metrics."""

    shards: str = setting(
        "", "shards directory (with manifest.json) written by the 'shards' command"
    )
    model: str = setting(
        "",
        "base model: a local Hugging Face model directory, a hub id already in the local "
        "cache (never downloaded), or a JSON/YAML model config file (a small model is "
        "built from it with a BPE tokenizer trained on the shards)",
    )
    out: str = setting(
        "", "output directory: model/ (final, HF format), metrics.jsonl, train_result.json"
    )
    objective: str = setting(
        "sft",
        "sft: weighted next-token loss on the final text; dpo: final text (chosen) over the "
        "logged proposal (rejected) against a frozen reference; sft+dpo: both; kto: unpaired "
        "feedback (desirable kept/refined texts, undesirable deleted/rewritten proposals) "
        "against a frozen reference; sft+kto: SFT plus KTO",
        choices=OBJECTIVES,
    )
    num_workers: int = setting(2, "Ray Train workers (data-parallel ranks)")
    use_gpu: bool = setting(False, "one GPU per worker (NCCL); else CPU workers with gloo")
    cpus_per_worker: float = setting(
        0.5, "CPUs reserved per worker; fractional on small machines so Ray Data keeps a core"
    )
    gpus_per_worker: float = setting(1.0, "GPUs per worker when --use-gpu")
    zero_stage: int = setting(
        2, "DeepSpeed ZeRO stage (0 = plain data parallel)", choices=(0, 1, 2, 3)
    )
    precision: str = setting(
        "auto",
        "auto: bf16 on GPUs that have it, else fp16 on GPU, fp32 on CPU",
        choices=("auto", "fp32", "bf16", "fp16"),
    )
    epochs: int = setting(1, "passes over the training split (when --max-steps is 0)")
    max_steps: int = setting(
        0, "optimizer steps in the run (0: epochs x steps per epoch); sets the LR schedule"
    )
    stop_after_steps: int = setting(
        0,
        "stop (with a checkpoint) after this many steps without changing the schedule of "
        "--max-steps: a time-boxed or deliberately interrupted run that a rerun resumes",
    )
    micro_batch_size: int = setting(4, "pairs per worker per forward/backward")
    grad_accum: int = setting(1, "micro-batches accumulated per optimizer step")
    lr: float = setting(1e-4, "peak learning rate (AdamW)")
    weight_decay: float = setting(0.0, "AdamW weight decay")
    warmup_steps: int = setting(0, "linear warm-up steps")
    lr_schedule: str = setting(
        "cosine", "decay after warm-up", choices=("cosine", "linear", "constant")
    )
    min_lr_ratio: float = setting(0.1, "final LR as a fraction of --lr (cosine/linear)")
    clip_grad: float = setting(1.0, "gradient-norm clipping (0: off)")
    max_seq_len: int = setting(512, "tokens per sequence; the prompt is truncated from the left")
    max_completion_tokens: int = setting(128, "completion tokens kept (plus the end token)")
    dpo_beta: float = setting(0.1, "DPO temperature beta")
    sft_weight: float = setting(1.0, "weight of the SFT term in sft+dpo and sft+kto")
    kto_beta: float = setting(0.1, "KTO temperature beta")
    kto_desirable_weight: float = setting(
        1.0, "KTO weight of the desirable rows' loss (lambda_D; raise it when they are scarce)"
    )
    kto_undesirable_weight: float = setting(
        1.0, "KTO weight of the undesirable rows' loss (lambda_U)"
    )
    lora: bool = setting(
        False,
        "train LoRA adapters (peft) instead of every weight; the adapter and the merged "
        "model are both saved",
    )
    lora_r: int = setting(8, "LoRA rank")
    lora_alpha: int = setting(16, "LoRA alpha (the update is scaled by alpha / r)")
    lora_dropout: float = setting(0.05, "dropout on the LoRA branch")
    lora_target_modules: tuple[str, ...] = setting(
        ("all-linear",),
        "modules that get adapters: names or name suffixes (e.g. q_proj,v_proj), or "
        "all-linear (every linear layer but the output head); comma-separated",
    )
    gradient_checkpointing: bool = setting(
        False, "recompute activations in the backward pass (less memory, about 30% more compute)"
    )
    use_pair_weights: bool = setting(True, "weight each pair's loss by its shard 'weight' column")
    seed: int = setting(0, "seed of model init (config-built models) and data order")
    run_name: str = setting(
        "echo-train",
        "Ray Train run name; rerunning with the same name and storage resumes from the "
        "run's latest checkpoint",
    )
    storage_path: str = setting(
        "",
        "Ray Train storage for checkpoints: a local/shared path or s3://, gs:// (default OUT/ray)",
    )
    max_failures: int = setting(
        0,
        "Ray Train FailureConfig(max_failures): restart the worker group from the latest "
        "checkpoint after this many worker failures (-1: without limit; 0: fail at once)",
    )
    resume_from: str = setting(
        "", "a checkpoint directory to start from when the run has none of its own"
    )
    checkpoint_every: int = setting(0, "steps between checkpoints (0: only at the end)")
    keep_checkpoints: int = setting(2, "checkpoints kept in storage (the newest)")
    log_every: int = setting(1, "steps between progress lines (every step goes to metrics.jsonl)")
    peak_tflops: float = setting(
        0.0, "peak TFLOP/s of one worker's device for MFU (0: known GPUs only, null on CPU)"
    )

    def validate(self) -> None:
        """Reject settings that cannot work, with a one-line reason (on construction)."""
        for name in ("shards", "model", "out"):
            if not getattr(self, name):
                raise ConfigError(f"--{name} is required")
        positive = (
            "num_workers",
            "micro_batch_size",
            "grad_accum",
            "max_seq_len",
            "max_completion_tokens",
        )
        for name in positive:
            if getattr(self, name) < 1:
                raise ConfigError(f"setting {name} must be >= 1")
        if self.max_seq_len <= self.max_completion_tokens + 1:
            raise ConfigError(
                "max_seq_len must exceed max_completion_tokens + 1 (room for the prompt)"
            )
        if self.epochs < 1 and self.max_steps < 1:
            raise ConfigError("set epochs >= 1 or max_steps >= 1")
        if self.max_failures < -1:
            raise ConfigError("setting max_failures must be >= -1 (-1: retry without limit)")
        if self.lr <= 0 or self.dpo_beta <= 0 or self.kto_beta <= 0:
            raise ConfigError("lr, dpo_beta and kto_beta must be > 0")
        if min(self.kto_desirable_weight, self.kto_undesirable_weight, self.sft_weight) < 0:
            raise ConfigError("sft_weight and the kto weights must be >= 0")
        if "kto" in self.objective and self.micro_batch_size < 2:
            raise ConfigError(
                "KTO estimates its KL term from mismatched pairs within a micro-batch: "
                "set micro_batch_size >= 2"
            )
        if self.lora:
            if self.lora_r < 1 or self.lora_alpha <= 0:
                raise ConfigError("lora_r must be >= 1 and lora_alpha > 0")
            if not 0.0 <= self.lora_dropout < 1.0:
                raise ConfigError("lora_dropout must be within [0, 1)")
            if not self.lora_target_modules:
                raise ConfigError("lora_target_modules is empty (e.g. all-linear or q_proj,v_proj)")
        if self.precision in ("bf16", "fp16") and not self.use_gpu:
            raise ConfigError(f"precision {self.precision} needs --use-gpu (CPU runs are fp32)")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def replace(self, **changes: Any) -> TrainConfig:
        return dataclasses.replace(self, **changes)
