"""A bare single-process torch loop on the same model, data and losses.

It is the baseline of ``benchmarks/bench_train.py`` (Ray Train + DeepSpeed overhead) and
the engine of the objective tests. No Ray, no DeepSpeed, no checkpoints.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from typing import Any

from echo.train.data import BatchPlan, Examples, collate_pref, collate_sft


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
) -> LoopResult:
    """``steps`` AdamW steps of ``objective`` (one micro-batch per step) on ``model``."""
    import torch

    from echo.train.objectives import objective_loss, trained_tokens

    if objective in ("dpo", "sft+dpo") and ref_model is None:
        ref_model = copy.deepcopy(model).eval().requires_grad_(False)
    opt = torch.optim.AdamW(
        model.parameters(), lr=lr, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.0
    )
    streams = {
        f: BatchPlan(len(ex), micro_batch_size, seed).stream(ex, 0) for f, ex in examples.items()
    }
    model.train()
    res = LoopResult()
    t0 = time.perf_counter()
    for _ in range(steps):
        sft_b = (
            collate_sft(examples["sft"], next(streams["sft"]), pad_id) if "sft" in streams else None
        )
        pref_b = (
            collate_pref(examples["pref"], next(streams["pref"]), pad_id)
            if "pref" in streams
            else None
        )
        loss, stats = objective_loss(
            objective, model, ref_model, sft_b, pref_b, beta=beta, sft_weight=sft_weight
        )
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if clip_grad > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), clip_grad)
        opt.step()
        res.losses.append(stats["loss"])
        res.stats.append(stats)
        res.tokens += trained_tokens(objective, sft_b, pref_b)
    res.seconds = time.perf_counter() - t0
    return res
