"""Losses: weighted SFT on the final text, DPO (final over proposal), KTO (unpaired
desirable / undesirable completions), and the mixes sft+dpo, sft+kto.

All work on batches from :mod:`echo.train.data` (labels are -100 outside the
completion). Sequence log-probabilities sum the completion tokens only.
"""

from __future__ import annotations

from dataclasses import dataclass
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


@dataclass(frozen=True)
class KTOParams:
    beta: float = 0.1
    desirable_weight: float = 1.0
    undesirable_weight: float = 1.0


def _kl_estimate(policy_kl: torch.Tensor, ref_kl: torch.Tensor) -> torch.Tensor:
    """KTO's reference point z0: the mean log-ratio of the mismatched pairs, averaged over
    every data-parallel rank, clamped at 0, without gradient (TRL's estimate)."""
    import torch.distributed as dist

    kl = (policy_kl - ref_kl).detach().mean()
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        kl = kl.clone()
        dist.all_reduce(kl)
        kl = kl / dist.get_world_size()
    return kl.clamp(min=0)


def kto_loss(
    model: Any,
    ref_model: Any,
    batch: dict[str, torch.Tensor],
    params: KTOParams,
    use_weights: bool = True,
) -> tuple[torch.Tensor, dict[str, float]]:
    """KTO (Ethayarajh et al. 2024, as in TRL's ``KTOTrainer``) on ``collate_kto`` batches.

    r_i = log pi(y_i|x_i) - log ref(y_i|x_i); z0 = max(0, mean over the mismatched pairs
    (x_i, y_{i-1}) of the same log-ratio), detached. Desirable rows lose
    ``lambda_D * (1 - sigmoid(beta * (r_i - z0)))``, undesirable rows
    ``lambda_U * (1 - sigmoid(beta * (z0 - r_i)))``; the loss is their mean, weighted by
    the rows' ``weight`` column when ``use_weights``.
    """
    b = batch["kto_label"].shape[0]
    n_tokens = batch["attention_mask"].shape[1]
    matched = {k: v[:b] for k, v in batch.items() if k in ("input_ids", "attention_mask", "labels")}
    mismatched = {k: v[b:] for k, v in batch.items() if k in matched}
    assert mismatched["input_ids"].shape == (b, n_tokens)
    logp, _ = sequence_logps(model, matched)
    with torch.no_grad():
        ref_logp, _ = sequence_logps(ref_model, matched)
        kl = _kl_estimate(sequence_logps(model, mismatched)[0], sequence_logps(ref_model, mismatched)[0])
    ratio = logp - ref_logp
    good = batch["kto_label"].to(ratio.device)
    per = torch.where(
        good,
        params.desirable_weight * (1 - torch.sigmoid(params.beta * (ratio - kl))),
        params.undesirable_weight * (1 - torch.sigmoid(params.beta * (kl - ratio))),
    )
    w = batch["weights"].to(per.device) if use_weights else torch.ones_like(per)
    loss = (w * per).sum() / w.sum().clamp(min=1e-6)
    r = ratio.detach()
    n_good, n_bad = int(good.sum()), int((~good).sum())
    return loss, {
        "kto_loss": float(loss.detach()),
        "kto_kl": float(kl),
        # mean log-ratios of each kind in this micro-batch (0.0 when it holds none)
        "kto_desirable_logratio": float(r[good].mean()) if n_good else 0.0,
        "kto_undesirable_logratio": float(r[~good].mean()) if n_bad else 0.0,
        "kto_desirable_share": n_good / max(b, 1),
    }


def kto_margin(model: Any, ref_model: Any, batch: dict[str, torch.Tensor]) -> float:
    """Mean log-ratio of the desirable rows minus that of the undesirable rows of a
    ``collate_kto`` batch (0 when model == reference)."""
    b = batch["kto_label"].shape[0]
    matched = {k: v[:b] for k, v in batch.items() if k in ("input_ids", "attention_mask", "labels")}
    with torch.no_grad():
        r = sequence_logps(model, matched)[0] - sequence_logps(ref_model, matched)[0]
    good = batch["kto_label"]
    return float(r[good].mean() - r[~good].mean())


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
    kto_batch: dict[str, torch.Tensor] | None = None,
    kto: KTOParams | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """The run's loss for one micro-batch (``sft``, ``dpo``, ``sft+dpo``, ``kto``,
    ``sft+kto``)."""
    stats: dict[str, float] = {}
    total: torch.Tensor | None = None
    if objective in ("sft", "sft+dpo", "sft+kto"):
        assert sft_batch is not None
        loss, s = sft_loss(model, sft_batch, use_weights)
        total = loss * (sft_weight if objective != "sft" else 1.0)
        stats.update(s)
    if objective in ("dpo", "sft+dpo"):
        assert pref_batch is not None
        loss, s = dpo_loss(model, ref_model, pref_batch, beta, use_weights)
        total = loss if total is None else total + loss
        stats.update(s)
    if objective in ("kto", "sft+kto"):
        assert kto_batch is not None
        loss, s = kto_loss(model, ref_model, kto_batch, kto or KTOParams(), use_weights)
        total = loss if total is None else total + loss
        stats.update(s)
    assert total is not None
    stats["loss"] = float(total.detach())
    return total, stats


def trained_tokens(
    objective: str,
    sft_batch: dict[str, Any] | None,
    pref_batch: dict[str, Any] | None,
    kto_batch: dict[str, Any] | None = None,
) -> int:
    """Non-padding tokens that went through the trained model with gradient in this
    micro-batch (KTO's mismatched KL rows run without gradient and are not counted)."""
    n = 0
    if objective in ("sft", "sft+dpo", "sft+kto") and sft_batch is not None:
        n += int(sft_batch["attention_mask"].sum())
    if objective in ("dpo", "sft+dpo") and pref_batch is not None:
        n += int(pref_batch["attention_mask"].sum())
    if objective in ("kto", "sft+kto") and kto_batch is not None:
        n += int(kto_batch["attention_mask"][: kto_batch["kto_label"].shape[0]].sum())
    return n
