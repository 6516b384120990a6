"""Graph containers, imbalanced splits, and the graphs of the tests and the benchmark."""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from torch import Tensor

from echo.graph import sparse as sp


@dataclass(frozen=True)
class Graph:
    """A node-classification graph: features, undirected edges, labels and masks."""

    x: Tensor
    edge_index: Tensor
    y: Tensor
    num_classes: int
    train_mask: Tensor
    val_mask: Tensor
    test_mask: Tensor

    @property
    def n(self) -> int:
        return int(self.x.size(0))

    def with_masks(self, train: Tensor, val: Tensor, test: Tensor) -> Graph:
        return replace(self, train_mask=train, val_mask=val, test_mask=test)


def sbm(
    sizes: list[int],
    p_in: float,
    p_out: float,
    *,
    dim: int = 16,
    signal: float = 1.0,
    seed: int = 0,
) -> Graph:
    """Stochastic block model: block ``c`` has ``sizes[c]`` nodes, edge probability
    ``p_in`` inside a block and ``p_out`` across; features are a class mean (scaled by
    ``signal``) plus unit Gaussian noise. Every node is in the train mask (tests pick)."""
    g = torch.Generator().manual_seed(seed)
    y = torch.cat([torch.full((s,), c, dtype=torch.long) for c, s in enumerate(sizes)])
    n = y.numel()
    prob = torch.where(y[:, None] == y[None, :], p_in, p_out)
    upper = torch.triu(torch.rand(n, n, generator=g) < prob, diagonal=1)
    ei = upper.nonzero().T
    ei, _ = sp.to_undirected(ei, None, n)
    means = torch.randn(len(sizes), dim, generator=g) * signal
    x = means[y] + torch.randn(n, dim, generator=g)
    ones = torch.ones(n, dtype=torch.bool)
    return Graph(x, ei, y, len(sizes), ones, ~ones, ~ones)


def imbalanced_split(
    y: Tensor,
    num_classes: int,
    *,
    kind: str,
    ratio: float,
    n_max: int,
    n_val: int,
    seed: int,
    candidates: Tensor | None = None,
) -> tuple[Tensor, Tensor, Tensor, list[int]]:
    """Train/val/test masks with an imbalanced training set (the field's protocol).

    ``step``: the last ``C // 2`` classes (a random class order per seed) get
    ``n_max / ratio`` labeled nodes, the others ``n_max``. ``lt`` (long-tailed): class of
    rank ``r`` gets ``n_max * ratio ** (-r / (C - 1))``, at least 1. Validation: ``n_val``
    per class (fewer if the class is small), balanced; test: every other node. Returns
    ``(train, val, test, minority classes)``."""
    g = torch.Generator().manual_seed(seed)
    n = y.numel()
    pool = torch.ones(n, dtype=torch.bool) if candidates is None else candidates.clone()
    order = torch.randperm(num_classes, generator=g).tolist()
    counts: dict[int, int] = {}
    for rank, c in enumerate(order):
        if kind == "step":
            counts[c] = max(1, round(n_max / ratio)) if rank >= num_classes - num_classes // 2 else n_max
        elif kind == "lt":
            counts[c] = max(1, round(n_max * ratio ** (-rank / max(1, num_classes - 1))))
        else:
            raise ValueError(f"unknown split kind {kind!r} (step or lt)")
    train = torch.zeros(n, dtype=torch.bool)
    val = torch.zeros(n, dtype=torch.bool)
    for c in range(num_classes):
        idx = (pool & (y == c)).nonzero().flatten()
        idx = idx[torch.randperm(idx.numel(), generator=g)]
        k_val = min(n_val, idx.numel() // 3)
        val[idx[:k_val]] = True
        train[idx[k_val : k_val + min(counts[c], max(1, idx.numel() - k_val - 1))]] = True
    test = pool & ~train & ~val
    mean = sum(counts.values()) / num_classes
    minority = [c for c in range(num_classes) if counts[c] < mean]
    return train, val, test, minority


def planetoid_root() -> Path:
    """Where the Planetoid raw files are: ``$ECHO_PLANETOID_DIR``, else
    ``$ECHO_SHARED/datasets/planetoid`` (the shared folder the tests use), else the first
    ``shared/datasets/planetoid`` beside the repository or one of its parents (a git
    worktree sits deeper than the main checkout). The path may not exist."""
    env = os.environ.get("ECHO_PLANETOID_DIR")
    if env:
        return Path(env)
    shared = os.environ.get("ECHO_SHARED")
    if shared:
        return Path(shared) / "datasets" / "planetoid"
    here = Path(__file__).resolve().parents[2]
    for parent in (here, *here.parents):
        cand = parent / "shared" / "datasets" / "planetoid"
        if cand.is_dir():
            return cand
    return here.parent / "shared" / "datasets" / "planetoid"


def planetoid(root: str | Path, name: str, *, workdir: str | Path | None = None) -> Graph:
    """Cora or CiteSeer through ``torch_geometric.datasets.Planetoid``, read offline from
    a writable copy of ``root`` (Planetoid writes its processed files beside the raw)."""
    from torch_geometric.datasets import Planetoid

    src = Path(root) / name / "raw"
    if not src.is_dir():
        raise FileNotFoundError(f"no Planetoid raw files at {src}")
    work = Path(workdir or tempfile.mkdtemp(prefix="planetoid-"))
    dst = work / name / "raw"
    if not dst.exists():
        shutil.copytree(src, dst)
    data = Planetoid(str(work), name)[0]
    n = int(data.num_nodes)
    ei, _ = sp.to_undirected(data.edge_index, None, n)
    ones = torch.ones(n, dtype=torch.bool)
    x = data.x.float()
    x = x / x.sum(1, keepdim=True).clamp(min=1.0)  # row-normalized bag of words (the usual transform)
    return Graph(x, ei, data.y.long(), int(data.y.max()) + 1, ones, ~ones, ~ones)
