"""Training a base (with an imbalance method, with or without structural balance),
prediction, and the metrics of imbalanced node classification."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from echo.graph import sparse as sp
from echo.graph.balance import (
    BalanceConfig,
    BalanceReport,
    amplification,
    diffuse_relations,
    enhance_structure,
)
from echo.graph.data import Graph
from echo.graph.imbalance import METHODS, class_weights, inherit_edges, oversample_anchors
from echo.graph.models import make_base


@dataclass(frozen=True)
class FitConfig:
    hidden: int = 64
    dropout: float = 0.5
    lr: float = 0.01
    weight_decay: float = 5e-4
    epochs: int = 200
    patience: int = 50  # stop when validation balanced accuracy has not improved this long
    balance: BalanceConfig = field(default_factory=BalanceConfig)


@dataclass
class FitResult:
    probs: Tensor  # n x C class probabilities of the original nodes
    metrics: dict[str, float]  # on the test mask
    report: BalanceReport | None
    epochs_run: int
    model: nn.Module | None = None
    val_bacc: float = float("nan")  # validation balanced accuracy of the chosen epoch
    #: per class, how much more the training objective counted a labeled node of that
    #: class than plain cross-entropy on the labeled nodes would (1 everywhere for ``ce``;
    #: the class weights for ``reweight``; the oversampling factor for ``oversample``)
    prior_shift: Tensor | None = None

    def calibrated(self) -> Tensor:
        """The class probabilities with the training's prior shift undone, ``p_c ∝ p̂_c /
        s_c`` (renormalized per node): a model trained to over-weight rare classes
        over-predicts them by about that factor, so sums of ``probs`` over-count them;
        sums of these estimate the class counts. Classes absent from training keep 0."""
        if self.prior_shift is None:
            return self.probs
        s = self.prior_shift.to(self.probs.dtype)
        q = torch.where(s > 0, self.probs / s.clamp(min=1e-12), torch.zeros_like(self.probs))
        return q / q.sum(dim=1, keepdim=True).clamp(min=1e-12)


def metrics(y: Tensor, pred: Tensor, num_classes: int, minority: list[int]) -> dict[str, float]:
    """Accuracy, balanced accuracy (mean per-class recall), macro-F1 and minority recall
    (mean recall over the minority classes), over the classes present in ``y``."""
    recalls, f1s = [], []
    for c in range(num_classes):
        tp = int(((pred == c) & (y == c)).sum())
        pos = int((y == c).sum())
        pp = int((pred == c).sum())
        if pos == 0:
            continue
        r = tp / pos
        p = tp / pp if pp else 0.0
        recalls.append((c, r))
        f1s.append(2 * p * r / (p + r) if p + r else 0.0)
    rec = dict(recalls)
    minor = [rec[c] for c in minority if c in rec]
    return {
        "acc": float((pred == y).float().mean()) if y.numel() else 0.0,
        "bacc": sum(rec.values()) / len(rec) if rec else 0.0,
        "macro_f1": sum(f1s) / len(f1s) if f1s else 0.0,
        "minority_recall": sum(minor) / len(minor) if minor else float("nan"),
    }


def base_operator(base: str, edge_index: Tensor, weight: Tensor | None, n: int) -> Tensor:
    """The base's own propagation matrix: ``D^-1/2 (A+I) D^-1/2`` for GCN (and the MLP,
    which ignores it), the mean adjacency for GraphSAGE."""
    if base == "sage":
        return sp.mean_adjacency(edge_index, weight, n)
    return sp.gcn_norm(edge_index, weight, n)


def propagation(
    base: str,
    edge_index: Tensor,
    weight: Tensor | None,
    n: int,
    diffusion: Tensor | None = None,
    mix: float = 0.5,
) -> Tensor:
    """The matrix a base propagates with. Without structural balance its own operator on
    the graph; with it ``(1 - mix) * own operator on the enhanced graph + mix * S`` (S:
    the row-normalized diffusion matrix; ``mix = 1`` replaces the operator by S)."""
    own = base_operator(base, edge_index, weight, n)
    if diffusion is None or mix == 0:
        return own
    if mix >= 1:
        return diffusion
    return (own * (1 - mix) + diffusion.coalesce() * mix).coalesce()


def fit(
    graph: Graph,
    *,
    base: str,
    method: str = "ce",
    balance: bool = False,
    minority: list[int] | None = None,
    seed: int = 0,
    cfg: FitConfig | None = None,
    keep_model: bool = False,
) -> FitResult:
    """Train on ``graph.train_mask``, select the epoch by validation balanced accuracy,
    report test metrics.

    With ``balance``: structure enhancement, then relation diffusion on the enhanced graph
    (docs/graph.md), and the base propagates with :func:`propagation`. With
    ``method="oversample"`` the synthetic nodes come after the balance (balance first,
    then synthesis) and inherit their anchor's rows of both operators."""
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r} (one of {', '.join(METHODS)})")
    cfg = cfg or FitConfig()
    torch.manual_seed(seed)
    n, c = graph.n, graph.num_classes
    x, y, train = graph.x, graph.y, graph.train_mask
    ei, w = graph.edge_index, None
    report = None
    s_ei: Tensor | None = None
    s_w: Tensor | None = None
    if balance:
        ei, w, report = enhance_structure(x, ei, y, train, c, cfg.balance)
        amp = amplification(y, train, c, report.minority_classes, cfg.balance.amplify)
        s = diffuse_relations(ei, w, n, amp, cfg.balance)
        report.diffusion_nnz = int(s.values().numel())
        s_ei, s_w = s.indices(), s.values()
    counts_before = torch.bincount(y[train], minlength=c).float()
    if method == "oversample":
        xs, ys, anchors = oversample_anchors(x, y, train, c, seed=seed)
        ei, w = inherit_edges(ei, w, anchors, n)
        if s_ei is not None:
            s_ei, s_w = inherit_edges(s_ei, s_w, anchors, n, link_anchor=False)
        x, y = torch.cat([x, xs]), torch.cat([y, ys])
        train = torch.cat([train, torch.ones(anchors.numel(), dtype=torch.bool)])
    m = x.size(0)
    diffusion = None if s_ei is None else sp.row_normalize(sp.matrix(s_ei, s_w, m))
    prop = propagation(base, ei, w, m, diffusion, cfg.balance.mix)
    if float((x != 0).float().mean()) < 0.1:  # bag-of-words features: sparse first layer
        x = x.to_sparse()
    model = make_base(base, x.size(1), cfg.hidden, c, cfg.dropout)
    cw = class_weights(y, train, c) if method == "reweight" else None
    if cw is not None:
        shift = cw.clone()
    else:  # ce: 1; oversample: labeled nodes per class after / before the synthesis
        after = torch.bincount(y[train], minlength=c).float()
        shift = torch.where(counts_before > 0, after / counts_before.clamp(min=1), torch.zeros(c))
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    val = graph.val_mask
    best, best_state, since, epochs = -1.0, None, 0, 0
    for epoch in range(cfg.epochs):
        epochs = epoch + 1
        model.train()
        opt.zero_grad()
        out = model(x, prop)
        loss = nn.functional.cross_entropy(out[train], y[train], weight=cw)
        loss.backward()
        opt.step()
        if val.any():
            model.eval()
            with torch.no_grad():
                pred = model(x, prop)[:n].argmax(1)
            score = metrics(graph.y[val], pred[val], c, [])["bacc"]
            if score > best:
                best, since = score, 0
                best_state = {k: v.clone() for k, v in model.state_dict().items()}
            else:
                since += 1
                if since >= cfg.patience:
                    break
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    with torch.no_grad():
        probs = torch.softmax(model(x, prop)[:n], dim=1)
    test = graph.test_mask
    res = metrics(graph.y[test], probs.argmax(1)[test], c, minority or [])
    return FitResult(probs, res, report, epochs, model if keep_model else None,
                     best if best >= 0 else float("nan"), shift)  # fmt: skip
