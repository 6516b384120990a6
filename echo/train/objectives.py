"""Losses: weighted SFT on the final text, DPO (final over proposal), and both.

All work on batches from :mod:`echo.train.data` (labels are -100 outside the
completion). Sequence log-probabilities sum the completion tokens only.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F


def sequence_logps(model: Any, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sequence sum of completion-token log-probs, and completion token counts."""
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    logits = logits[:, :-1].float()
    target = batch["labels"][:, 1:]
    nll = F.cross_entropy(
        logits.reshape(-1, logits.shape[-1]),
        target.reshape(-1),
        ignore_index=-100,
        reduction="none",
    ).view(target.shape)
    mask = (target != -100).to(nll.dtype)
    return -(nll * mask).sum(-1), mask.sum(-1)


def sft_loss(
    model: Any, batch: dict[str, torch.Tensor], use_weights: bool = True
) -> tuple[torch.Tensor, dict[str, float]]:
    """Weighted token-mean NLL of the completions: sum_i w_i * nll_i / sum_i w_i * n_i."""
    logp, n = sequence_logps(model, batch)
    w = batch["weights"].to(logp.device) if use_weights else torch.ones_like(logp)
    loss = -(w * logp).sum() / (w * n).sum().clamp(min=1e-6)
    return loss, {
        "sft_loss": float(loss.detach()),
        "sft_nll": float(-logp.detach().sum() / n.sum().clamp(min=1)),
    }


def dpo_loss(
    model: Any,
    ref_model: Any,
    batch: dict[str, torch.Tensor],
    beta: float,
    use_weights: bool = True,
) -> tuple[torch.Tensor, dict[str, float]]:
    """DPO on ``collate_pref`` batches (chosen rows, then rejected rows).

    margin = (log pi(c) - log ref(c)) - (log pi(r) - log ref(r)); loss = -log sigmoid(beta * margin).
    """
    logp, _ = sequence_logps(model, batch)
    with torch.no_grad():
        ref_logp, _ = sequence_logps(ref_model, batch)
    b = logp.shape[0] // 2
    margin = (logp[:b] - ref_logp[:b]) - (logp[b:] - ref_logp[b:])
    per = -F.logsigmoid(beta * margin)
    w = batch["weights"].to(per.device) if use_weights else torch.ones_like(per)
    loss = (w * per).sum() / w.sum().clamp(min=1e-6)
    return loss, {
        "dpo_loss": float(loss.detach()),
        "dpo_margin": float(margin.detach().mean()),
        "dpo_accuracy": float((margin.detach() > 0).float().mean()),
    }


def preference_margin(model: Any, ref_model: Any, batch: dict[str, torch.Tensor]) -> float:
    """Mean chosen-vs-rejected log-ratio margin (0 when model == reference)."""
    with torch.no_grad():
        logp, _ = sequence_logps(model, batch)
        ref_logp, _ = sequence_logps(ref_model, batch)
    b = logp.shape[0] // 2
    return float(((logp[:b] - ref_logp[:b]) - (logp[b:] - ref_logp[b:])).mean())


def objective_loss(
    objective: str,
    model: Any,
    ref_model: Any,
    sft_batch: dict[str, torch.Tensor] | None,
    pref_batch: dict[str, torch.Tensor] | None,
    *,
    beta: float,
    sft_weight: float = 1.0,
    use_weights: bool = True,
) -> tuple[torch.Tensor, dict[str, float]]:
    """The run's loss for one micro-batch (``sft``, ``dpo`` or ``sft+dpo``)."""
    stats: dict[str, float] = {}
    total: torch.Tensor | None = None
    if objective in ("sft", "sft+dpo"):
        assert sft_batch is not None
        loss, s = sft_loss(model, sft_batch, use_weights)
        total = loss * (sft_weight if objective == "sft+dpo" else 1.0)
        stats.update(s)
    if objective in ("dpo", "sft+dpo"):
        assert pref_batch is not None
        loss, s = dpo_loss(model, ref_model, pref_batch, beta, use_weights)
        total = loss if total is None else total + loss
        stats.update(s)
    assert total is not None
    stats["loss"] = float(total.detach())
    return total, stats


def trained_tokens(
    objective: str, sft_batch: dict[str, Any] | None, pref_batch: dict[str, Any] | None
) -> int:
    """Non-padding tokens that went through the trained model in this micro-batch."""
    n = 0
    if objective in ("sft", "sft+dpo") and sft_batch is not None:
        n += int(sft_batch["attention_mask"].sum())
    if objective in ("dpo", "sft+dpo") and pref_batch is not None:
        n += int(pref_batch["attention_mask"].sum())
    return n
