"""Structural balance (a reconstruction of GraphSB from its public abstract).

Two stages fix the graph's *structure* before a base classifier (and before any node
synthesis) sees it:

1. :func:`enhance_structure`: dual-view hard-node mining and adaptive similarity edges.
   Each labeled minority node (an *anchor*) gets edges to reliable nodes of its own
   class, as many as close its degree gap to the majority classes (more for hard
   anchors, whose two views disagree about their class).
2. :func:`diffuse_relations`: personalized PageRank on the enhanced graph by sparse
   power iteration (top-k pruned every step, never a dense inverse), with the mass that
   flows from minority nodes amplified, then top-k sparsified and row-normalized.

The equations and the reasoning are in docs/graph.md. Nothing here is the authors' code:
none is published.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from echo.graph import sparse as sp


@dataclass(frozen=True)
class BalanceConfig:
    """Settings of structural balance (defaults: docs/graph.md)."""

    hops: int = 2  # propagation steps of the structural view
    view_mix: float = 0.5  # lambda: weight of the structural view in the edge score
    max_new_edges: int = 10  # at most this many similarity edges per anchor
    hard_boost: float = 1.0  # a hard anchor's budget is (1 + hard_boost) x its degree gap
    min_similarity: float = 0.0  # candidate edges need a score above this
    pseudo_per_class: int = 200  # reliable unlabeled candidates kept per minority class
    ppr_alpha: float = 0.15  # teleport probability of the personalized PageRank
    ppr_iters: int = 10  # power-iteration steps
    ppr_keep: int = 64  # entries kept per row after each step (bounds memory)
    topk: int = 32  # entries kept per row of the final diffusion matrix
    # beta: minority sources scaled by (n_max / n_c) ** beta. 0 by default: chosen on the
    # validation split of Cora step-10 (docs/graph.md); the amplification stays a setting
    amplify: float = 0.0
    mix: float = 0.5  # eta: a base propagates with (1 - eta) its own operator on the enhanced graph + eta S


@dataclass
class BalanceReport:
    """What structural balance did (for logs, tests and the benchmark)."""

    minority_classes: list[int]
    hard_anchors: int
    edges_added: int
    minority_degree_before: float
    minority_degree_after: float
    majority_degree: float
    diffusion_nnz: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


def minority_classes(y: Tensor, mask: Tensor, num_classes: int) -> list[int]:
    """Classes whose labeled count is below the mean labeled count per class."""
    counts = torch.bincount(y[mask], minlength=num_classes).float()
    return [c for c in range(num_classes) if 0 < counts[c] < counts.mean()]


def _normalize(z: Tensor) -> Tensor:
    return z / z.norm(dim=1, keepdim=True).clamp(min=1e-12)


def views(x: Tensor, edge_index: Tensor, n: int, hops: int) -> tuple[Tensor, Tensor]:
    """(feature view, structural view), both row-L2-normalized.

    ``F = x / |x|``; ``S = norm((D^-1/2 (A+I) D^-1/2)^hops F)``."""
    f = _normalize(x.float())
    a = sp.gcn_norm(edge_index, None, n)
    s = f
    for _ in range(hops):
        s = torch.sparse.mm(a, s)
    return f, _normalize(s)


def prototypes(z: Tensor, y: Tensor, mask: Tensor, num_classes: int) -> Tensor:
    """Normalized mean of each class's labeled nodes (zero row for an absent class)."""
    out = torch.zeros(num_classes, z.size(1))
    out.index_add_(0, y[mask], z[mask])
    return _normalize(out)


def enhance_structure(
    x: Tensor,
    edge_index: Tensor,
    y: Tensor,
    train_mask: Tensor,
    num_classes: int,
    cfg: BalanceConfig | None = None,
) -> tuple[Tensor, Tensor, BalanceReport]:
    """Structure enhancement: returns the undirected enhanced ``(edge_index, weight)``
    (original edges weight 1, added edges their similarity score) and a report."""
    cfg = cfg or BalanceConfig()
    n = x.size(0)
    ei, w = sp.to_undirected(edge_index, None, n)
    ei, w2 = sp.remove_self_loops(ei, w)
    w = w2 if w2 is not None else torch.ones(ei.size(1))
    deg = sp.degree(ei, n)
    minority = minority_classes(y, train_mask, num_classes)
    labeled = train_mask.nonzero().flatten()
    major_nodes = labeled[~torch.isin(y[labeled], torch.tensor(minority, dtype=torch.long))]
    d_major = float(deg[major_nodes].mean()) if major_nodes.numel() else float(deg.mean())
    minor_nodes = labeled[torch.isin(y[labeled], torch.tensor(minority, dtype=torch.long))]
    d_minor_before = float(deg[minor_nodes].mean()) if minor_nodes.numel() else 0.0
    report = BalanceReport(minority, 0, 0, d_minor_before, d_minor_before, d_major)
    if not minority or minor_nodes.numel() == 0:
        return ei, w, report

    f, s = views(x, ei, n, cfg.hops)
    pf, ps = prototypes(f, y, train_mask, num_classes), prototypes(s, y, train_mask, num_classes)
    qf, qs = f @ pf.T, s @ ps.T  # n x C class scores in each view
    present = torch.bincount(y[train_mask], minlength=num_classes) > 0
    qf[:, ~present] = -2.0
    qs[:, ~present] = -2.0

    def margin(q: Tensor, nodes: Tensor) -> Tensor:
        own = q[nodes, y[nodes]]
        other = q[nodes].clone()
        other[torch.arange(nodes.numel()), y[nodes]] = -3.0
        return own - other.max(dim=1).values

    hard = torch.minimum(margin(qf, minor_nodes), margin(qs, minor_nodes)) < 0
    report.hard_anchors = int(hard.sum())
    # reliable unlabeled nodes: both views agree on the class
    agree = (qf.argmax(1) == qs.argmax(1)) & ~train_mask
    pseudo = qf.argmax(1)
    adj = set(zip(ei[0].tolist(), ei[1].tolist(), strict=True))
    new_src: list[int] = []
    new_dst: list[int] = []
    new_w: list[float] = []
    for c in minority:
        lab_c = labeled[y[labeled] == c]
        cand_u = (agree & (pseudo == c)).nonzero().flatten()
        if cand_u.numel() > cfg.pseudo_per_class:  # keep the most confident ones
            conf = (qf[cand_u, c] + qs[cand_u, c]) / 2
            cand_u = cand_u[torch.topk(conf, cfg.pseudo_per_class).indices]
        cands = torch.cat([lab_c, cand_u])
        anchors_c = minor_nodes[y[minor_nodes] == c]
        hard_c = hard[y[minor_nodes] == c]
        score = cfg.view_mix * (s[anchors_c] @ s[cands].T) + (1 - cfg.view_mix) * (f[anchors_c] @ f[cands].T)
        for a_pos, a in enumerate(anchors_c.tolist()):
            gap = max(0.0, d_major - float(deg[a]))
            budget = math.ceil(gap * (1 + cfg.hard_boost * float(hard_c[a_pos])))
            if bool(hard_c[a_pos]):
                budget = max(budget, 1)
            budget = min(budget, cfg.max_new_edges)
            if budget == 0:
                continue
            order = torch.argsort(score[a_pos], descending=True)
            taken = 0
            for j_pos in order.tolist():
                j = int(cands[j_pos])
                sc = float(score[a_pos, j_pos])
                if sc <= cfg.min_similarity or taken >= budget:
                    break
                if j == a or (a, j) in adj:
                    continue
                adj.add((a, j))
                adj.add((j, a))
                new_src.append(a)
                new_dst.append(j)
                new_w.append(sc)
                taken += 1
    report.edges_added = len(new_src)
    if new_src:
        add = torch.tensor([new_src, new_dst], dtype=torch.long)
        ei = torch.cat([ei, add, add.flip(0)], dim=1)
        wt = torch.tensor(new_w, dtype=torch.float32)
        w = torch.cat([w, wt, wt])
        ei, w = sp.coalesce(ei, w, n, reduce="max")
    deg_after = sp.degree(ei, n)
    report.minority_degree_after = float(deg_after[minor_nodes].mean())
    return ei, w, report


def amplification(
    y: Tensor, known: Tensor, num_classes: int, minority: list[int], beta: float
) -> Tensor:
    """Per-node source weight ``a_j = (n_max / n_c(j)) ** beta`` for nodes of a minority
    class ``c(j)`` (``known`` says whose class is trusted), 1 elsewhere."""
    counts = torch.bincount(y[known], minlength=num_classes).float()
    a = torch.ones(y.numel())
    if not minority or beta == 0:
        return a
    n_max = counts.max()
    for c in minority:
        a[known & (y == c)] = float((n_max / counts[c].clamp(min=1)) ** beta)
    return a


def diffuse_relations(
    edge_index: Tensor,
    weight: Tensor | None,
    n: int,
    source_weight: Tensor | None = None,
    cfg: BalanceConfig | None = None,
) -> Tensor:
    """Relation diffusion: a sparse, row-normalized matrix ``S`` (row = target).

    ``T = D^-1/2 (A+I) D^-1/2``; ``P_0 = I``; ``P_{t+1} = topk_keep(alpha I + (1-alpha) P_t T)``;
    ``S = rownorm(topk(P_K diag(a)))`` with ``a`` the minority amplification."""
    cfg = cfg or BalanceConfig()
    t = sp.gcn_norm(edge_index, weight, n)
    eye = torch.sparse_coo_tensor(torch.arange(n).repeat(2, 1), torch.ones(n), (n, n)).coalesce()
    p = eye
    for _ in range(cfg.ppr_iters):
        p = (eye * cfg.ppr_alpha + torch.sparse.mm(p, t) * (1 - cfg.ppr_alpha)).coalesce()
        p = sp.topk_per_row(p, cfg.ppr_keep)
    if source_weight is not None:
        idx, val = p.indices(), p.values()
        p = torch.sparse_coo_tensor(idx, val * source_weight[idx[1]], p.shape).coalesce()
    return sp.row_normalize(sp.topk_per_row(p, cfg.topk))


def structural_balance(
    x: Tensor,
    edge_index: Tensor,
    y: Tensor,
    train_mask: Tensor,
    num_classes: int,
    cfg: BalanceConfig | None = None,
) -> tuple[Tensor, Tensor, BalanceReport]:
    """Both stages: returns the diffusion matrix as ``(edge_index, weight)`` (row-normalized,
    row = target) and the report."""
    cfg = cfg or BalanceConfig()
    n = x.size(0)
    ei, w, report = enhance_structure(x, edge_index, y, train_mask, num_classes, cfg)
    amp = amplification(y, train_mask, num_classes, report.minority_classes, cfg.amplify)
    s = diffuse_relations(ei, w, n, amp, cfg)
    report.diffusion_nnz = int(s.values().numel())
    return s.indices(), s.values(), report
