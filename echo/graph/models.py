"""The bases structural balance plugs in front of, in plain torch.

Every model is called as ``model(x, prop)`` where ``prop`` is a sparse ``n x n``
propagation matrix (row = target): the GCN-normalized adjacency, GraphSAGE's mean
adjacency, or the structural-balance diffusion matrix. The MLP ignores it (the check
that the graph helps at all).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

BASES = ("mlp", "gcn", "sage")


def input_dropout(x: Tensor, p: float, training: bool) -> Tensor:
    """Dropout of the input features, dense or sparse (a sparse ``x``, such as Planetoid's
    bag of words, keeps its sparsity: dropout acts on its stored values)."""
    if not x.is_sparse:
        return nn.functional.dropout(x, p, training)
    if not training or p == 0:
        return x
    x = x.coalesce()
    return torch.sparse_coo_tensor(x.indices(), nn.functional.dropout(x.values(), p, True), x.shape)


def linear(lin: nn.Linear, x: Tensor) -> Tensor:
    """``lin(x)`` for a dense or a sparse ``x``."""
    if not x.is_sparse:
        return lin(x)
    out = torch.sparse.mm(x, lin.weight.T)
    return out if lin.bias is None else out + lin.bias


class MLP(nn.Module):
    def __init__(self, d_in: int, hidden: int, d_out: int, dropout: float = 0.5) -> None:
        super().__init__()
        self.lin1, self.lin2 = nn.Linear(d_in, hidden), nn.Linear(hidden, d_out)
        self.dropout = dropout

    def forward(self, x: Tensor, prop: Tensor | None = None) -> Tensor:
        h = input_dropout(x, self.dropout, self.training)
        h = torch.relu(linear(self.lin1, h))
        h = nn.functional.dropout(h, self.dropout, self.training)
        return self.lin2(h)


class GCN(nn.Module):
    """Two layers ``P relu(P X W1) W2`` (Kipf and Welling, 2017)."""

    def __init__(self, d_in: int, hidden: int, d_out: int, dropout: float = 0.5) -> None:
        super().__init__()
        self.lin1, self.lin2 = nn.Linear(d_in, hidden), nn.Linear(hidden, d_out)
        self.dropout = dropout

    def forward(self, x: Tensor, prop: Tensor | None = None) -> Tensor:
        assert prop is not None
        h = input_dropout(x, self.dropout, self.training)
        h = torch.relu(torch.sparse.mm(prop, linear(self.lin1, h)))
        h = nn.functional.dropout(h, self.dropout, self.training)
        return torch.sparse.mm(prop, self.lin2(h))


class SAGE(nn.Module):
    """Two GraphSAGE-mean layers ``H W_root + (P H) W_neigh`` (Hamilton et al., 2017)."""

    def __init__(self, d_in: int, hidden: int, d_out: int, dropout: float = 0.5) -> None:
        super().__init__()
        self.root1, self.neigh1 = nn.Linear(d_in, hidden), nn.Linear(d_in, hidden, bias=False)
        self.root2, self.neigh2 = nn.Linear(hidden, d_out), nn.Linear(hidden, d_out, bias=False)
        self.dropout = dropout

    def forward(self, x: Tensor, prop: Tensor | None = None) -> Tensor:
        assert prop is not None
        h = input_dropout(x, self.dropout, self.training)
        # (P X) W_n = P (X W_n): the product stays n x hidden for a sparse or wide X
        h = torch.relu(linear(self.root1, h) + torch.sparse.mm(prop, linear(self.neigh1, h)))
        h = nn.functional.dropout(h, self.dropout, self.training)
        return self.root2(h) + self.neigh2(torch.sparse.mm(prop, h))


def make_base(name: str, d_in: int, hidden: int, d_out: int, dropout: float = 0.5) -> nn.Module:
    cls = {"mlp": MLP, "gcn": GCN, "sage": SAGE}.get(name)
    if cls is None:
        raise ValueError(f"unknown base {name!r} (one of {', '.join(BASES)})")
    return cls(d_in, hidden, d_out, dropout)
