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


class MLP(nn.Module):
    def __init__(self, d_in: int, hidden: int, d_out: int, dropout: float = 0.5) -> None:
        super().__init__()
        self.lin1, self.lin2 = nn.Linear(d_in, hidden), nn.Linear(hidden, d_out)
        self.dropout = dropout

    def forward(self, x: Tensor, prop: Tensor | None = None) -> Tensor:
        h = nn.functional.dropout(x, self.dropout, self.training)
        h = torch.relu(self.lin1(h))
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
        h = nn.functional.dropout(x, self.dropout, self.training)
        h = torch.relu(torch.sparse.mm(prop, self.lin1(h)))
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
        h = nn.functional.dropout(x, self.dropout, self.training)
        h = torch.relu(self.root1(h) + self.neigh1(torch.sparse.mm(prop, h)))
        h = nn.functional.dropout(h, self.dropout, self.training)
        return self.root2(h) + self.neigh2(torch.sparse.mm(prop, h))


def make_base(name: str, d_in: int, hidden: int, d_out: int, dropout: float = 0.5) -> nn.Module:
    cls = {"mlp": MLP, "gcn": GCN, "sage": SAGE}.get(name)
    if cls is None:
        raise ValueError(f"unknown base {name!r} (one of {', '.join(BASES)})")
    return cls(d_in, hidden, d_out, dropout)
