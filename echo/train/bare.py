"""A bare single-process torch loop on the same model, data and losses.

It is the baseline of ``benchmarks/bench_train.py`` (Ray Train + DeepSpeed overhead) and
the engine of the objective tests. No Ray, no DeepSpeed, no checkpoints.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from typing import Any

from echo.train.data import COLLATE, BatchPlan, Examples


@dataclass
class LoopResult:
    losses: list[float] = field(default_factory=list)
    stats: list[dict[str, float]] = field(default_factory=list)
    tokens: int = 0
    seconds: float = 0.0

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds if self.seconds > 0 else 0.0


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
    import torch

    from echo.train.config import REFERENCE_OBJECTIVES
    from echo.train.lora import AdapterOffReference, is_peft_model
    from echo.train.objectives import objective_loss, trained_tokens

    if objective in REFERENCE_OBJECTIVES and ref_model is None:
        ref_model = (
            AdapterOffReference(model)
            if is_peft_model(model)
            else copy.deepcopy(model).eval().requires_grad_(False)
        )
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.0)
    streams = {
        f: BatchPlan(len(ex), micro_batch_size, seed).stream(ex, 0) for f, ex in examples.items()
    }
    model.train()
    res = LoopResult()
    t0 = time.perf_counter()
    for _ in range(steps):
        b = {f: COLLATE[f](examples[f], next(s), pad_id) for f, s in streams.items()}
        loss, stats = objective_loss(
            objective,
            model,
            ref_model,
            b.get("sft"),
            b.get("pref"),
            beta=beta,
            sft_weight=sft_weight,
            kto_batch=b.get("kto"),
            kto=kto,
        )
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if clip_grad > 0:
            torch.nn.utils.clip_grad_norm_(params, clip_grad)
        opt.step()
        res.losses.append(stats["loss"])
        res.stats.append(stats)
        res.tokens += trained_tokens(objective, b.get("sft"), b.get("pref"), b.get("kto"))
    res.seconds = time.perf_counter() - t0
    return res
