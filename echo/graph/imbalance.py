"""Imbalance methods the bases run with: class reweighting and a GraphSMOTE-family
oversampler (both operate on the labeled training nodes only)."""

from __future__ import annotations

import torch
from torch import Tensor

METHODS = ("ce", "reweight", "oversample")


def class_weights(y: Tensor, mask: Tensor, num_classes: int) -> Tensor:
    """Inverse-frequency weights ``w_c = N / (C' n_c)`` over the C' classes present
    (absent classes get 0), so a balanced set gets weight 1 everywhere."""
    counts = torch.bincount(y[mask], minlength=num_classes).float()
    present = counts > 0
    w = torch.zeros(num_classes)
    w[present] = counts.sum() / (present.sum() * counts[present])
    return w


def oversample(
    x: Tensor,
    y: Tensor,
    train_mask: Tensor,
    edge_index: Tensor,
    weight: Tensor | None,
    num_classes: int,
    *,
    seed: int = 0,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """GraphSMOTE-style oversampling until every labeled class has as many labeled nodes
    as the largest one.

    A synthetic node of class c interpolates an anchor ``i`` (random labeled node of c) and
    its nearest labeled same-class neighbour ``j`` (cosine on the features):
    ``x_new = x_i + delta (x_j - x_i)``, ``delta ~ U(0, 1)``. It inherits the anchor's
    incoming edges (with their weights) and an edge from the anchor, so it aggregates
    the anchor's neighbourhood; no existing node receives from it. Returns
    ``(x, y, train_mask, edge_index, weight)`` with the synthetic nodes appended."""
    g = torch.Generator().manual_seed(seed)
    n = x.size(0)
    w = torch.ones(edge_index.size(1)) if weight is None else weight.float()
    counts = torch.bincount(y[train_mask], minlength=num_classes)
    target = int(counts.max())
    xs, ys, src_l, dst_l, w_l = [], [], [], [], []
    xn = x.float() / x.float().norm(dim=1, keepdim=True).clamp(min=1e-12)
    nxt = n
    for c in range(num_classes):
        nodes = (train_mask & (y == c)).nonzero().flatten()
        need = target - nodes.numel()
        if nodes.numel() == 0 or need <= 0:
            continue
        sim = xn[nodes] @ xn[nodes].T
        sim.fill_diagonal_(-2.0)
        nearest = nodes[sim.argmax(1)] if nodes.numel() > 1 else nodes
        pick = torch.randint(nodes.numel(), (need,), generator=g)
        delta = torch.rand(need, 1, generator=g)
        anchors, partners = nodes[pick], nearest[pick]
        xs.append(x[anchors] + delta * (x[partners] - x[anchors]))
        ys.append(torch.full((need,), c, dtype=y.dtype))
        for a in anchors.tolist():
            into = edge_index[0] == a
            src = edge_index[1][into]
            src_l += [src, torch.tensor([a])]
            dst_l += [torch.full((src.numel() + 1,), nxt, dtype=torch.long)]
            w_l += [w[into], torch.ones(1)]
            nxt += 1
    if not xs:
        return x, y, train_mask, edge_index, w
    m = nxt - n
    new_ei = torch.stack([torch.cat(dst_l), torch.cat(src_l)])
    return (
        torch.cat([x, torch.cat(xs)]),
        torch.cat([y, torch.cat(ys)]),
        torch.cat([train_mask, torch.ones(m, dtype=torch.bool)]),
        torch.cat([edge_index, new_ei], dim=1),
        torch.cat([w, torch.cat(w_l)]),
    )
