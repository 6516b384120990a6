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


def oversample_anchors(
    x: Tensor, y: Tensor, train_mask: Tensor, num_classes: int, *, seed: int = 0
) -> tuple[Tensor, Tensor, Tensor]:
    """GraphSMOTE-style synthetic nodes until every labeled class has as many labeled
    nodes as the largest one: ``(x_new, y_new, anchors)``, one row per synthetic node.

    A synthetic node of class c interpolates an anchor ``i`` (random labeled node of c) and
    its nearest labeled same-class neighbour ``j`` (cosine on the features):
    ``x_new = x_i + delta (x_j - x_i)``, ``delta ~ U(0, 1)``."""
    g = torch.Generator().manual_seed(seed)
    counts = torch.bincount(y[train_mask], minlength=num_classes)
    target = int(counts.max()) if counts.numel() else 0
    xs, ys, anchors_l = [], [], []
    xn = x.float() / x.float().norm(dim=1, keepdim=True).clamp(min=1e-12)
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
        anchors_l.append(anchors)
    if not xs:
        return x[:0], y[:0], torch.zeros(0, dtype=torch.long)
    return torch.cat(xs), torch.cat(ys), torch.cat(anchors_l)


def inherit_edges(
    edge_index: Tensor, weight: Tensor | None, anchors: Tensor, n: int, *, link_anchor: bool = True
) -> tuple[Tensor, Tensor]:
    """The graph with synthetic nodes ``n, n+1, ...`` appended: each receives its anchor's
    incoming edges (with their weights) and, with ``link_anchor``, an edge from the
    anchor itself; no existing node receives from a synthetic one (row = target)."""
    w = torch.ones(edge_index.size(1)) if weight is None else weight.float()
    if anchors.numel() == 0:
        return edge_index, w
    order = torch.argsort(edge_index[0], stable=True)
    rows, cols, ws = edge_index[0][order], edge_index[1][order], w[order]
    counts = torch.bincount(rows, minlength=n)
    starts = torch.cumsum(counts, 0) - counts
    per = counts[anchors]
    new_id = torch.arange(n, n + anchors.numel()).repeat_interleave(per)
    offs = torch.arange(int(per.sum())) - (torch.cumsum(per, 0) - per).repeat_interleave(per)
    pos = starts[anchors].repeat_interleave(per) + offs
    dst, src, nw = [new_id], [cols[pos]], [ws[pos]]
    if link_anchor:
        dst.append(torch.arange(n, n + anchors.numel()))
        src.append(anchors)
        nw.append(torch.ones(anchors.numel()))
    new_ei = torch.stack([torch.cat(dst), torch.cat(src)])
    return torch.cat([edge_index, new_ei], dim=1), torch.cat([w, torch.cat(nw)])


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
    """:func:`oversample_anchors` + :func:`inherit_edges`: the synthetic nodes appended to
    the features, labels, training mask and graph. Returns
    ``(x, y, train_mask, edge_index, weight)``."""
    n = x.size(0)
    xs, ys, anchors = oversample_anchors(x, y, train_mask, num_classes, seed=seed)
    ei, w = inherit_edges(edge_index, weight, anchors, n)
    m = anchors.numel()
    return (
        torch.cat([x, xs]),
        torch.cat([y, ys]),
        torch.cat([train_mask, torch.ones(m, dtype=torch.bool)]),
        ei,
        w,
    )
