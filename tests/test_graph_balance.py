"""echo.graph: structural balance, sparse helpers, imbalance methods, bases (plain torch)."""

from __future__ import annotations

from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from echo.graph import sparse as sp  # noqa: E402
from echo.graph.balance import (  # noqa: E402
    BalanceConfig,
    diffuse_relations,
    enhance_structure,
    minority_classes,
    structural_balance,
)
from echo.graph.data import imbalanced_split, planetoid_root, sbm  # noqa: E402
from echo.graph.fit import fit, metrics  # noqa: E402
from echo.graph.imbalance import class_weights, oversample  # noqa: E402

PLANETOID = planetoid_root()


def _sbm_minority(seed: int = 0):  # type: ignore[no-untyped-def]
    """Two majority blocks of 150 and a minority block of 15 nodes, sparser inside."""
    return sbm([150, 150, 15], 0.06, 0.005, seed=seed, signal=1.0)


def test_minority_classes_are_those_below_the_mean_labeled_count() -> None:
    y = torch.tensor([0] * 10 + [1] * 10 + [2] * 2)
    assert minority_classes(y, torch.ones(22, dtype=torch.bool), 3) == [2]


def test_enhancement_raises_minority_degree_toward_the_majority() -> None:
    g = _sbm_minority()
    _ei, _w, rep = enhance_structure(g.x, g.edge_index, g.y, g.train_mask, 3)
    assert rep.minority_classes == [2]
    assert rep.minority_degree_before < rep.majority_degree
    assert rep.minority_degree_after > rep.minority_degree_before
    # the gap shrinks (added edges are sized to the gap, capped per anchor)
    gap_before = rep.majority_degree - rep.minority_degree_before
    assert abs(rep.majority_degree - rep.minority_degree_after) < gap_before
    assert rep.edges_added > 0


def test_enhancement_adds_only_same_class_edges_at_minority_anchors() -> None:
    g = _sbm_minority(seed=1)
    before = {(int(a), int(b)) for a, b in g.edge_index.T}
    ei, w, _ = enhance_structure(g.x, g.edge_index, g.y, g.train_mask, 3)
    added = [(int(a), int(b)) for a, b in ei.T if (int(a), int(b)) not in before]
    assert added
    # every added edge touches a minority anchor and joins two nodes of its class
    assert all(g.y[a] == 2 and g.y[b] == 2 for a, b in added)
    # added edges carry their similarity as weight, originals weight 1
    wmap = {(int(a), int(b)): float(x) for (a, b), x in zip(ei.T, w, strict=True)}
    assert all(wmap[e] == 1.0 for e in before if e[0] != e[1])
    assert all(0 < wmap[e] <= 1.0 for e in added)


def test_enhancement_without_minority_changes_nothing() -> None:
    g = sbm([40, 40], 0.1, 0.01, seed=2)
    ei, _, rep = enhance_structure(g.x, g.edge_index, g.y, g.train_mask, 2)
    assert rep.minority_classes == [] and rep.edges_added == 0
    assert ei.size(1) == sp.to_undirected(g.edge_index, None, g.n)[0].size(1)


def test_diffusion_rows_are_normalized_and_sparse() -> None:
    g = _sbm_minority()
    cfg = BalanceConfig(topk=8, ppr_keep=16, ppr_iters=6)
    s = diffuse_relations(g.edge_index, None, g.n, None, cfg)
    assert s.is_sparse
    rows = torch.zeros(g.n).index_add_(0, s.indices()[0], s.values())
    assert torch.allclose(rows, torch.ones(g.n), atol=1e-5)
    assert int(sp.nnz_per_row(s).max()) <= 8
    assert s.values().numel() <= 8 * g.n < g.n * g.n
    assert bool((s.values() > 0).all())


def test_diffusion_amplifies_what_flows_from_minority_nodes() -> None:
    g = _sbm_minority()
    cfg = BalanceConfig(topk=16, ppr_keep=32, ppr_iters=6)
    amp = torch.ones(g.n)
    amp[g.y == 2] = 5.0
    plain = diffuse_relations(g.edge_index, None, g.n, None, cfg).to_dense()
    boosted = diffuse_relations(g.edge_index, None, g.n, amp, cfg).to_dense()
    minority_cols = g.y == 2
    assert boosted[:, minority_cols].sum() > plain[:, minority_cols].sum()


def test_structural_balance_returns_a_row_normalized_sparse_graph() -> None:
    g = _sbm_minority()
    ei, w, rep = structural_balance(g.x, g.edge_index, g.y, g.train_mask, 3, BalanceConfig(topk=10))
    assert rep.diffusion_nnz == w.numel() <= 10 * g.n
    rows = torch.zeros(g.n).index_add_(0, ei[0], w)
    assert torch.allclose(rows, torch.ones(g.n), atol=1e-5)


def test_topk_per_row_keeps_the_largest_entries() -> None:
    m = torch.tensor([[0.1, 0.5, 0.3, 0.0], [0.0, 0.0, 0.2, 0.9], [0.0, 0.0, 0.0, 0.0], [1.0, 2.0, 3.0, 4.0]])
    kept = sp.topk_per_row(m.to_sparse(), 2).to_dense()
    expected = torch.tensor([[0.0, 0.5, 0.3, 0.0], [0.0, 0.0, 0.2, 0.9], [0.0] * 4, [0.0, 0.0, 3.0, 4.0]])
    assert torch.equal(kept, expected)


def test_gcn_norm_is_symmetric_normalization_with_self_loops() -> None:
    ei = torch.tensor([[0, 1, 1, 2], [1, 0, 2, 1]])
    a = sp.gcn_norm(ei, None, 3).to_dense()
    dense = torch.tensor([[1.0, 1, 0], [1, 1, 1], [0, 1, 1]])
    d = dense.sum(1).pow(-0.5)
    assert torch.allclose(a, d[:, None] * dense * d[None, :])


def test_class_weights_are_inverse_frequency() -> None:
    y = torch.tensor([0, 0, 0, 1])
    w = class_weights(y, torch.ones(4, dtype=torch.bool), 3)
    assert torch.allclose(w, torch.tensor([4 / 6, 2.0, 0.0]))


def test_oversample_balances_labeled_counts_and_inherits_anchor_edges() -> None:
    g = _sbm_minority()
    train = torch.zeros(g.n, dtype=torch.bool)
    train[:20] = True  # class 0
    train[150:170] = True  # class 1
    train[300:303] = True  # class 2 (3 labeled)
    x, y, tr, ei, _w = oversample(g.x, g.y, train, g.edge_index, None, 3, seed=0)
    assert torch.bincount(y[tr], minlength=3).tolist() == [20, 20, 20]
    assert x.size(0) == g.n + 17 and ei.size(1) > g.edge_index.size(1)
    new = torch.arange(g.n, x.size(0))
    # synthetic nodes only receive (row = target), never send to original nodes
    assert int((ei[1] >= g.n).sum()) == 0
    assert bool((ei[0][g.edge_index.size(1) :] >= g.n).all())
    # each lies on the segment between two class-2 labeled nodes: inside their bounding box
    lo, hi = g.x[300:303].min(0).values, g.x[300:303].max(0).values
    assert bool(((x[new] >= lo - 1e-5) & (x[new] <= hi + 1e-5)).all())


def test_imbalanced_split_step_gives_ratio_between_majority_and_minority() -> None:
    y = torch.arange(6).repeat_interleave(100)
    train, val, test, minority = imbalanced_split(y, 6, kind="step", ratio=10, n_max=20, n_val=10, seed=0)
    counts = torch.bincount(y[train], minlength=6)
    assert sorted(counts.tolist()) == [2, 2, 2, 20, 20, 20]
    assert sorted(minority) == sorted(int(c) for c in (counts == 2).nonzero().flatten())
    assert not bool((train & val).any() or (train & test).any() or (val & test).any())


def test_imbalanced_split_long_tailed_decays_to_max_over_ratio() -> None:
    y = torch.arange(5).repeat_interleave(200)
    train, _, _, _ = imbalanced_split(y, 5, kind="lt", ratio=100, n_max=100, n_val=10, seed=0)
    counts = sorted(torch.bincount(y[train], minlength=5).tolist(), reverse=True)
    assert counts == [100, 32, 10, 3, 1]


def test_metrics_balanced_accuracy_and_minority_recall() -> None:
    y = torch.tensor([0, 0, 0, 0, 1, 1])
    pred = torch.tensor([0, 0, 0, 0, 1, 0])
    m = metrics(y, pred, 2, [1])
    assert m["acc"] == pytest.approx(5 / 6)
    assert m["bacc"] == pytest.approx((1 + 0.5) / 2)
    assert m["minority_recall"] == pytest.approx(0.5)


@pytest.mark.parametrize("base", ["mlp", "gcn", "sage"])
def test_each_base_learns_an_sbm_with_and_without_balance(base: str) -> None:
    g = sbm([120, 120, 20], 0.08, 0.004, seed=3, signal=0.6)
    tr, va, te, minority = imbalanced_split(g.y, 3, kind="step", ratio=10, n_max=20, n_val=5, seed=0)
    g = g.with_masks(tr, va, te)
    from echo.graph.fit import FitConfig

    for bal in (False, True):
        r = fit(g, base=base, method="reweight", balance=bal, minority=minority, seed=0, cfg=FitConfig(epochs=60))
        assert r.probs.shape == (g.n, 3)
        assert torch.allclose(r.probs.sum(1), torch.ones(g.n), atol=1e-5)
        assert r.metrics["bacc"] > 1 / 3 + 0.1  # well above chance


def test_planetoid_cora_loads_offline_from_a_writable_copy(tmp_path: Path) -> None:
    if not (PLANETOID / "Cora" / "raw").is_dir():
        pytest.skip(f"Planetoid raw files not found at {PLANETOID}")
    pytest.importorskip("torch_geometric")
    from echo.graph.data import planetoid

    g = planetoid(PLANETOID, "Cora", workdir=tmp_path)
    assert (g.n, g.num_classes, g.x.size(1)) == (2708, 7, 1433)
    assert (tmp_path / "Cora" / "processed").is_dir()  # written to the copy, not the share


def test_synthetic_nodes_inherit_their_anchors_rows_of_the_diffusion() -> None:
    from echo.graph.imbalance import inherit_edges

    g = _sbm_minority()
    s = diffuse_relations(g.edge_index, None, g.n, None, BalanceConfig(topk=8, ppr_keep=16, ppr_iters=4))
    anchors = torch.tensor([300, 301, 300])
    ei, w = inherit_edges(s.indices(), s.values(), anchors, g.n, link_anchor=False)
    dense = sp.matrix(ei, w, g.n + 3).to_dense()
    for k, a in enumerate(anchors.tolist()):
        assert torch.equal(dense[g.n + k, : g.n], dense[a, : g.n])
    assert float(dense[: g.n, g.n :].abs().sum()) == 0.0  # no original node receives from them


def test_balanced_propagation_mixes_the_base_operator_and_the_diffusion() -> None:
    from echo.graph.fit import base_operator, propagation

    g = _sbm_minority()
    s = diffuse_relations(g.edge_index, None, g.n, None, BalanceConfig(topk=8, ppr_keep=16, ppr_iters=4))
    own = base_operator("sage", g.edge_index, None, g.n).to_dense()
    mixed = propagation("sage", g.edge_index, None, g.n, s, 0.25).to_dense()
    assert torch.allclose(mixed, 0.75 * own + 0.25 * s.to_dense(), atol=1e-6)
    assert torch.equal(propagation("sage", g.edge_index, None, g.n, s, 1.0).to_dense(), s.to_dense())


def test_calibrated_probabilities_undo_the_prior_shift_exactly() -> None:
    import torch

    from echo.graph.fit import FitResult

    probs = torch.tensor([[0.5, 0.5], [0.9, 0.1]])
    res = FitResult(probs, {}, None, 1, prior_shift=torch.tensor([1.0, 4.0]))
    # p ∝ p̂ / s: [0.5, 0.125] -> [0.8, 0.2]; [0.9, 0.025] -> [0.9/0.925, 0.025/0.925]
    assert torch.allclose(res.calibrated(), torch.tensor([[0.8, 0.2], [0.9 / 0.925, 0.025 / 0.925]]))
    assert torch.equal(FitResult(probs, {}, None, 1).calibrated(), probs)


def test_reweighted_training_over_counts_the_minority_and_calibration_corrects_it() -> None:
    """Sums of probabilities estimate class counts only once the reweighting is undone:
    on noisy SBMs with a 10:1 minority, held-out nodes."""
    import dataclasses

    import torch

    raw_err = cal_err = 0.0
    for seed in range(3):
        g = sbm([300, 30], 0.05, 0.01, seed=seed, signal=0.4)
        half = torch.rand(g.n, generator=torch.Generator().manual_seed(seed)) < 0.5
        g = dataclasses.replace(g, train_mask=half, val_mask=half, test_mask=~half)
        res = fit(g, base="mlp", method="reweight", seed=seed)
        true = float((g.y[~half] == 1).sum())
        raw = float(res.probs[~half, 1].sum())
        assert raw > true  # the reweighted model over-predicts the minority
        raw_err += abs(raw - true)
        cal_err += abs(float(res.calibrated()[~half, 1].sum()) - true)
    assert cal_err < 0.5 * raw_err


def test_backtest_time_moves_to_the_busiest_window_after_the_share_point() -> None:
    import numpy as np

    from echo.graph.forecast import backtest_time

    # 40 shows one minute apart, and a burst of 4 shows 0.5 s apart at minute 25.5
    burst = 25 * 60_000 + 30_000 + np.arange(4) * 500
    shown = np.concatenate([np.arange(40) * 60_000, burst])
    # half-way (the 22nd of 44 shows) is minute 21; of the next quarter of the shows (11),
    # the last show of the burst has the most shows in the 10 s before it
    assert backtest_time(shown, 0.5, window_ms=10_000) == int(burst[-1])
    # with a window shorter than the burst's spacing every candidate counts one: the first
    assert backtest_time(shown, 0.5, window_ms=100) == 21 * 60_000
    with pytest.raises(ValueError, match="no suggestions"):
        backtest_time(np.array([], dtype=np.int64), 0.5, window_ms=1)
