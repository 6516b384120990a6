"""Sparse adjacency helpers in plain torch (no torch_scatter / torch_sparse).

Graphs are ``edge_index`` (``2 x E`` long: row = target, col = source, so that a
propagation ``P @ H`` aggregates over a node's in-neighbours) with an optional
``edge_weight`` (``E`` float). Matrices are coalesced ``torch.sparse_coo_tensor``.
"""

from __future__ import annotations

import torch
from torch import Tensor


def coalesce(edge_index: Tensor, weight: Tensor | None, n: int, *, reduce: str = "sum") -> tuple[Tensor, Tensor]:
    """Merge duplicate edges (``sum`` or ``max`` of their weights) and sort by (row, col)."""
    w = torch.ones(edge_index.size(1), dtype=torch.float32) if weight is None else weight.float()
    if edge_index.numel() == 0:
        return edge_index.long().reshape(2, 0), w.reshape(0)
    key = edge_index[0].long() * n + edge_index[1].long()
    uniq, inv = torch.unique(key, return_inverse=True)
    out = torch.zeros(uniq.numel(), dtype=w.dtype)
    if reduce == "sum":
        out.index_add_(0, inv, w)
    elif reduce == "max":
        out.fill_(float("-inf"))
        out.scatter_reduce_(0, inv, w, reduce="amax", include_self=True)
    else:
        raise ValueError(f"unknown reduce {reduce!r}")
    return torch.stack([uniq // n, uniq % n]), out


def to_undirected(edge_index: Tensor, weight: Tensor | None, n: int) -> tuple[Tensor, Tensor]:
    """Both directions of every edge; a pair given twice keeps its largest weight."""
    w = torch.ones(edge_index.size(1)) if weight is None else weight.float()
    ei = torch.cat([edge_index, edge_index.flip(0)], dim=1)
    return coalesce(ei, torch.cat([w, w]), n, reduce="max")


def remove_self_loops(edge_index: Tensor, weight: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
    keep = edge_index[0] != edge_index[1]
    return edge_index[:, keep], (None if weight is None else weight[keep])


def degree(edge_index: Tensor, n: int, weight: Tensor | None = None) -> Tensor:
    """(Weighted) in-degree per node: the row sums of the adjacency."""
    w = torch.ones(edge_index.size(1)) if weight is None else weight.float()
    return torch.zeros(n).index_add_(0, edge_index[0].long(), w)


def matrix(edge_index: Tensor, weight: Tensor | None, n: int) -> Tensor:
    w = torch.ones(edge_index.size(1)) if weight is None else weight.float()
    return torch.sparse_coo_tensor(edge_index.long(), w, (n, n)).coalesce()


def gcn_norm(edge_index: Tensor, weight: Tensor | None, n: int) -> Tensor:
    """``D^-1/2 (A + I) D^-1/2`` (Kipf and Welling) as a sparse matrix."""
    ei, w = remove_self_loops(edge_index, weight)
    w = torch.ones(ei.size(1)) if w is None else w.float()
    loops = torch.arange(n)
    ei = torch.cat([ei, torch.stack([loops, loops])], dim=1)
    w = torch.cat([w, torch.ones(n)])
    ei, w = coalesce(ei, w, n)
    deg = degree(ei, n, w)
    inv = deg.clamp(min=1e-12).pow(-0.5)
    return matrix(ei, inv[ei[0]] * w * inv[ei[1]], n)


def row_normalize(m: Tensor) -> Tensor:
    """Rows of a sparse matrix scaled to sum to 1 (empty rows stay empty)."""
    m = m.coalesce()
    idx, val = m.indices(), m.values()
    sums = torch.zeros(m.size(0), dtype=val.dtype).index_add_(0, idx[0], val)
    return torch.sparse_coo_tensor(idx, val / sums[idx[0]].clamp(min=1e-12), m.shape).coalesce()


def mean_adjacency(edge_index: Tensor, weight: Tensor | None, n: int) -> Tensor:
    """Row-normalized adjacency without self-loops (GraphSAGE's mean aggregator)."""
    ei, w = remove_self_loops(edge_index, weight)
    ei, w = coalesce(ei, w, n)
    return row_normalize(matrix(ei, w, n))


def topk_per_row(m: Tensor, k: int) -> Tensor:
    """Keep the ``k`` largest entries of every row (ties: lower column first)."""
    m = m.coalesce()
    idx, val = m.indices(), m.values()
    if val.numel() == 0:
        return m
    order = torch.argsort(val, descending=True, stable=True)
    order = order[torch.argsort(idx[0][order], stable=True)]
    rows = idx[0][order]
    counts = torch.bincount(rows, minlength=m.size(0))
    starts = torch.cumsum(counts, 0) - counts
    rank = torch.arange(rows.numel()) - starts[rows]
    keep = order[rank < k]
    return torch.sparse_coo_tensor(idx[:, keep], val[keep], m.shape).coalesce()


def nnz_per_row(m: Tensor) -> Tensor:
    m = m.coalesce()
    return torch.bincount(m.indices()[0], minlength=m.size(0))
