"""A bare single-process torch loop on the same model, data and losses.

:func:`fit` is the one plain optimization loop of the project (AdamW, warm-up and decay,
gradient clipping, per-step stats): the static pretraining of the experience loop
(:mod:`echo.loop.static`) runs on it, and :func:`bare_train` runs the fine-tuning
objectives on it, the baseline of ``benchmarks/bench_train.py`` (Ray Train + DeepSpeed
overhead) and the engine of the objective tests. No Ray, no DeepSpeed, no checkpoints.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from echo.train.data import COLLATE, BatchPlan, Examples

#: the schedules :func:`lr_factor` knows (the names of ``TrainConfig.lr_schedule``)
SCHEDULES = ("constant", "linear", "cosine")


@dataclass
class LoopResult:
    losses: list[float] = field(default_factory=list)
    stats: list[dict[str, float]] = field(default_factory=list)
    tokens: int = 0
    seconds: float = 0.0

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds if self.seconds > 0 else 0.0


def lr_factor(
    step: int, steps: int, *, warmup_steps: int = 0, schedule: str = "constant", min_lr_ratio: float = 0.0
) -> float:
    """The learning rate of 0-based ``step`` as a fraction of the peak: a linear warm-up
    over ``warmup_steps`` times the decay of ``schedule`` from step 0 to ``steps``,
    which never goes below ``min_lr_ratio`` (``linear``, ``cosine``)."""
    if schedule not in SCHEDULES:
        raise ValueError(f"unknown schedule {schedule!r}; choose from {', '.join(SCHEDULES)}")
    warm = min(1.0, (step + 1) / warmup_steps) if warmup_steps > 0 else 1.0
    done = step / max(steps, 1)
    if schedule == "linear":
        decay = max(min_lr_ratio, 1.0 - done)
    elif schedule == "cosine":
        decay = min_lr_ratio + (1.0 - min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * min(done, 1.0)))
    else:
        decay = 1.0
    return warm * decay


#: ``loss_fn(model, batch) -> (loss, stats)``; stats holds at least ``loss``
LossFn = Callable[[Any, Any], "tuple[Any, dict[str, float]]"]


def fit(
    model: Any,
    batches: Iterator[Any],
    loss_fn: LossFn,
    *,
    steps: int,
    lr: float,
    weight_decay: float = 0.0,
    warmup_steps: int = 0,
    lr_schedule: str = "constant",
    min_lr_ratio: float = 0.0,
    clip_grad: float = 1.0,
    tokens: Callable[[Any], int] | None = None,
    on_step: Callable[[int, dict[str, float]], None] | None = None,
) -> LoopResult:
    """``steps`` AdamW steps of ``loss_fn`` on ``model``, one batch of ``batches`` each.

    ``tokens(batch)`` counts a batch's trained tokens (default: its attention mask);
    ``on_step(step, stats)`` is called after every step (1-based), ``stats`` with ``lr``."""
    import torch

    params = [p for p in model.parameters() if p.requires_grad]  # LoRA: the adapters only
    opt = torch.optim.AdamW(params, lr=lr, betas=(0.9, 0.95), eps=1e-8, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt,
        lambda s: lr_factor(
            s, steps, warmup_steps=warmup_steps, schedule=lr_schedule, min_lr_ratio=min_lr_ratio
        ),
    )
    count = tokens or (lambda b: int(b["attention_mask"].sum()))
    model.train()
    res = LoopResult()
    t0 = time.perf_counter()
    for step in range(steps):
        batch = next(batches)
        loss, stats = loss_fn(model, batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if clip_grad > 0:
            torch.nn.utils.clip_grad_norm_(params, clip_grad)
        stats = {**stats, "lr": float(opt.param_groups[0]["lr"])}
        opt.step()
        sched.step()
        res.losses.append(stats["loss"])
        res.stats.append(stats)
        res.tokens += count(batch)
        if on_step is not None:
            on_step(step + 1, stats)
    res.seconds = time.perf_counter() - t0
    return res


def bare_train(
    model: Any,
    objective: str,
    examples: dict[str, Examples],
    *,
    steps: int,
    micro_batch_size: int,
    lr: float,
    pad_id: int,
    beta: float = 0.1,
    sft_weight: float = 1.0,
    seed: int = 0,
    clip_grad: float = 1.0,
    ref_model: Any = None,
    kto: Any = None,
) -> LoopResult:
    """``steps`` AdamW steps of ``objective`` (one micro-batch per step) on ``model``.

    The reference of dpo/kto is ``ref_model``, else the model's own base with its LoRA
    adapters switched off (a peft model), else a frozen copy of the model."""
    from echo.train.config import REFERENCE_OBJECTIVES
    from echo.train.lora import AdapterOffReference, is_peft_model
    from echo.train.objectives import objective_loss, trained_tokens

    if objective in REFERENCE_OBJECTIVES and ref_model is None:
        ref_model = (
            AdapterOffReference(model)
            if is_peft_model(model)
            else copy.deepcopy(model).eval().requires_grad_(False)
        )
    streams = {
        f: BatchPlan(len(ex), micro_batch_size, seed).stream(ex, 0) for f, ex in examples.items()
    }

    def batches() -> Iterator[dict[str, Any]]:
        while True:
            yield {f: COLLATE[f](examples[f], next(s), pad_id) for f, s in streams.items()}

    def loss_fn(m: Any, b: dict[str, Any]) -> tuple[Any, dict[str, float]]:
        return objective_loss(
            objective, m, ref_model, b.get("sft"), b.get("pref"),
            beta=beta, sft_weight=sft_weight, kto_batch=b.get("kto"), kto=kto,
        )  # fmt: skip

    return fit(
        model, batches(), loss_fn, steps=steps, lr=lr, clip_grad=clip_grad,
        tokens=lambda b: trained_tokens(objective, b.get("sft"), b.get("pref"), b.get("kto")),
    )  # fmt: skip
