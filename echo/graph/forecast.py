"""The outcome forecaster: a base (with structural balance) trained on the suggestion
graph's closed suggestions, predicting class probabilities for every suggestion.

Pure pandas + torch (the Spark job in :mod:`echo.jobs.forecast` reads and writes the
tables); also used by the benchmark and the tests.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch

from echo.graph import sparse as sp
from echo.graph.config import ForecastConfig
from echo.graph.data import Graph
from echo.graph.fit import FitConfig, fit, metrics

#: the outcomes a forecaster predicts, in probability-column order (= echo.stages.graph.CLASSES)
CLASSES = ("ignored", "rejected", "kept", "refined", "rewritten", "deleted")
ACCEPTED_CLASSES = ("kept", "refined", "rewritten", "deleted")
MINORITY = ("refined", "rewritten", "deleted")


@dataclass
class ForecastResult:
    predictions: pd.DataFrame  # one row per node: probabilities and flags
    report: dict[str, Any]


def forecaster_name(cfg: ForecastConfig) -> str:
    return f"{'graphsb+' if cfg.structural_balance else ''}{cfg.base}+{cfg.method}"


def forecaster_version(cfg: ForecastConfig, feature_version: str) -> str:
    from echo import __version__

    keys = ("base", "method", "structural_balance", "epochs", "hidden", "seed", "val_share")
    sha = hashlib.sha256(json.dumps({k: getattr(cfg, k) for k in keys}, sort_keys=True).encode())
    return f"{__version__}/{feature_version}/{sha.hexdigest()[:8]}"


def build_graph(nodes: pd.DataFrame, edges: pd.DataFrame) -> tuple[torch.Tensor, torch.Tensor]:
    """(x, undirected edge_index) of the nodes in row order; edges whose ends are not both
    among the nodes are dropped. Features are standardized column-wise."""
    x = torch.tensor(np.stack(nodes["features"].map(np.asarray).to_list()), dtype=torch.float32) if len(nodes) else torch.zeros(0, 1)
    mean, std = x.mean(0, keepdim=True), x.std(0, keepdim=True)
    x = (x - mean) / std.clamp(min=1e-6)
    index = pd.Series(np.arange(len(nodes)), index=nodes["suggestion_id"].to_numpy())
    src = edges["src_id"].map(index)
    dst = edges["dst_id"].map(index)
    ok = src.notna() & dst.notna()
    ei = torch.tensor(np.stack([dst[ok].to_numpy(np.int64), src[ok].to_numpy(np.int64)]), dtype=torch.long).reshape(2, -1)
    ei, _ = sp.to_undirected(ei, None, len(nodes))
    return x, ei


def forecast(nodes: pd.DataFrame, edges: pd.DataFrame, cfg: ForecastConfig) -> ForecastResult:
    """Train on the nodes closed at ``as_of`` (outcome final and one of :data:`CLASSES`),
    pick the epoch on the newest ``val_share`` of them, predict every node shown by then.

    ``nodes``: suggestion_id, shown_ts_ms, accepted_ts_ms, known_ts_ms, outcome, features.
    """
    as_of = int(cfg.as_of_ms) or int(
        max(nodes["shown_ts_ms"].max(), nodes["accepted_ts_ms"].fillna(0).max())
    )
    nodes = nodes[nodes["shown_ts_ms"] <= as_of].sort_values(["shown_ts_ms", "suggestion_id"]).reset_index(drop=True)
    if len(nodes) == 0:
        raise ValueError("no suggestions shown by the forecast's as-of time")
    x, ei = build_graph(nodes, edges)
    open_ = nodes["known_ts_ms"].to_numpy() > as_of
    label = nodes["outcome"].map({c: i for i, c in enumerate(CLASSES)})
    closed = ~open_ & label.notna().to_numpy()
    y = torch.tensor(label.fillna(0).to_numpy(np.int64))
    idx = np.flatnonzero(closed)  # in time order
    n_val = max(1, int(len(idx) * cfg.val_share)) if len(idx) > 1 else 0
    train = torch.zeros(len(nodes), dtype=torch.bool)
    val = torch.zeros(len(nodes), dtype=torch.bool)
    train[idx[: len(idx) - n_val]] = True
    val[idx[len(idx) - n_val :]] = True
    if int(train.sum()) == 0:
        raise ValueError("no suggestion with a closed horizon to train on")
    graph = Graph(x, ei, y, len(CLASSES), train, val, val)
    minority = [CLASSES.index(c) for c in MINORITY]
    res = fit(
        graph,
        base=cfg.base,
        method=cfg.method,
        balance=cfg.structural_balance,
        minority=minority,
        seed=cfg.seed,
        cfg=FitConfig(hidden=cfg.hidden, epochs=cfg.epochs),
    )
    # p_*: calibrated (the reweighting's prior shift undone), so that their sums estimate
    # counts; predicted: the balanced decision of the trained model (its own argmax)
    probs = res.calibrated().numpy().astype(np.float64)
    out = nodes[["suggestion_id", "outcome"]].copy()
    for i, c in enumerate(CLASSES):
        out[f"p_{c}"] = probs[:, i]
    out["predicted"] = [CLASSES[i] for i in res.probs.numpy().argmax(1)]
    out["horizon_open"] = open_
    out["used_for_training"] = train.numpy()
    out["as_of_ms"] = as_of
    report: dict[str, Any] = {
        "as_of_ms": as_of,
        "nodes": len(nodes),
        "edges": int(ei.size(1) // 2),
        "train": int(train.sum()),
        "val": int(val.sum()),
        "open": int(open_.sum()),
        "replay_gap": int((nodes["outcome"] == "replay_gap").sum()),
        "val_metrics": {k: round(v, 4) for k, v in res.metrics.items()},
        "epochs_run": res.epochs_run,
    }
    if res.report is not None:
        r = res.report
        report["balance"] = {"hard_anchors": r.hard_anchors, "edges_added": r.edges_added,
                             "minority_degree_before": round(r.minority_degree_before, 3),
                             "minority_degree_after": round(r.minority_degree_after, 3),
                             "majority_degree": round(r.majority_degree, 3), "diffusion_nnz": r.diffusion_nnz}  # fmt: skip
    return ForecastResult(out, report)


def accepted_posterior(pred: pd.DataFrame) -> pd.DataFrame:
    """Probabilities over the accepted outcomes only (a replay_gap suggestion was
    accepted): ``p_c / sum of p over kept, refined, rewritten, deleted``."""
    p = pred[[f"p_{c}" for c in ACCEPTED_CLASSES]].to_numpy()
    s = p.sum(1, keepdims=True)
    p = np.where(s > 0, p / np.where(s > 0, s, 1), 1 / len(ACCEPTED_CLASSES))
    return pd.DataFrame(p, columns=list(ACCEPTED_CLASSES), index=pred.index)


def replay_gap_check(pred: pd.DataFrame, truth: pd.DataFrame) -> dict[str, Any]:
    """The estimates for ``replay_gap`` suggestions against the simulator's ground truth
    (``truth``: suggestion_id, outcome = the clean outcome).

    Reports, over the replay_gap rows the truth knows: their true count per accepted
    class, the estimated count (sum of the accepted posterior), the same from the naive
    baseline (the class shares of the closed accepted suggestions), the total absolute
    count error of both, and the accuracy of the argmax."""
    gap = pred[pred["outcome"] == "replay_gap"]
    t = gap.merge(truth[["suggestion_id", "outcome"]].rename(columns={"outcome": "truth"}), on="suggestion_id")
    t = t[t["truth"].isin(ACCEPTED_CLASSES)]
    closed = pred[pred["used_for_training"] & pred["outcome"].isin(ACCEPTED_CLASSES)]
    shares = closed["outcome"].value_counts(normalize=True).reindex(list(ACCEPTED_CLASSES), fill_value=0.0)
    post = accepted_posterior(t)
    true_n = t["truth"].value_counts().reindex(list(ACCEPTED_CLASSES), fill_value=0)
    est_n = post.sum(axis=0)
    base_n = shares * len(t)
    y = torch.tensor(t["truth"].map({c: i for i, c in enumerate(ACCEPTED_CLASSES)}).to_numpy(np.int64))
    pred_i = torch.tensor(post.to_numpy().argmax(1)) if len(t) else torch.zeros(0, dtype=torch.long)
    base_i = torch.full_like(y, int(np.argmax(shares.to_numpy())))
    return {
        "replay_gap_with_truth": len(t),
        "true": {c: int(true_n[c]) for c in ACCEPTED_CLASSES},
        "estimated": {c: round(float(est_n[c]), 2) for c in ACCEPTED_CLASSES},
        "baseline": {c: round(float(base_n[c]), 2) for c in ACCEPTED_CLASSES},
        "abs_error": round(float((est_n - true_n).abs().sum()), 2),
        "baseline_abs_error": round(float((base_n - true_n).abs().sum()), 2),
        "argmax": metrics(y, pred_i, len(ACCEPTED_CLASSES), []) if len(t) else {},
        "baseline_argmax": metrics(y, base_i, len(ACCEPTED_CLASSES), []) if len(t) else {},
    }


def _rate(s: pd.Series, c: str) -> float:
    return float((s == c).mean()) if len(s) else float("nan")


def backtest_time(shown_ts_ms: np.ndarray, share: float, window_ms: int) -> int:
    """The backtest's "now": ``share`` of the way through the shown times, moved forward
    (within the next quarter of the shows) to the moment with the most shows in the
    ``window_ms`` before it, so that as many horizons as possible are open then."""
    shown = np.sort(np.asarray(shown_ts_ms, dtype=np.int64))
    if len(shown) == 0:
        raise ValueError("no suggestions to forecast")
    t0 = int(shown[int(share * (len(shown) - 1))])
    cands = shown[shown >= t0][: max(1, len(shown) // 4)]
    counts = np.searchsorted(shown, cands, side="right") - np.searchsorted(shown, cands - window_ms, side="left")
    return int(cands[int(np.argmax(counts))])


def early_backtest(
    nodes: pd.DataFrame, edges: pd.DataFrame, cfg: ForecastConfig, *, share: float = 0.5
) -> dict[str, Any]:
    """The early forecast, checked: the forecaster trained as of an earlier time T (only
    suggestions closed by T, :func:`backtest_time`) forecasts the refine and delete rates
    of the suggestions still open at T, per model; beside them, the rates those
    suggestions measured later (their final outcomes in ``nodes``) and the naive forecast
    (the measured rates of the suggestions closed by T). ``nodes`` needs ``model_id``
    besides :func:`forecast`'s columns."""
    import dataclasses

    as_of = backtest_time(nodes["shown_ts_ms"].to_numpy(), share, cfg.refine_window_s * 1000)
    res = forecast(nodes, edges, dataclasses.replace(cfg, as_of_ms=as_of))
    p = res.predictions.merge(nodes[["suggestion_id", "model_id"]], on="suggestion_id")
    p["final"] = p["suggestion_id"].map(nodes.set_index("suggestion_id")["outcome"])
    rows = []
    for model, g in p.groupby(p["model_id"].fillna("(none)")):
        op = g[g["horizon_open"] & g["final"].isin(CLASSES)]
        cl = g[g["used_for_training"] | (~g["horizon_open"] & g["outcome"].isin(CLASSES))]
        rows.append({
            "model_id": model, "open": len(op), "closed": len(cl),
            "later_measured_refine": _rate(op["final"], "refined"), "later_measured_delete": _rate(op["final"], "deleted"),
            "forecast_refine": float(op["p_refined"].mean()) if len(op) else float("nan"),
            "forecast_delete": float(op["p_deleted"].mean()) if len(op) else float("nan"),
            "naive_refine": _rate(cl["outcome"], "refined"), "naive_delete": _rate(cl["outcome"], "deleted"),
        })  # fmt: skip
    err: dict[str, float] = {}
    w = np.array([r["open"] for r in rows], dtype=float)
    for kind in ("refine", "delete"):
        for src in ("forecast", "naive"):
            d = np.array([abs(r[f"{src}_{kind}"] - r[f"later_measured_{kind}"]) for r in rows], dtype=float)
            ok = ~np.isnan(d) & (w > 0)
            err[f"{src}_{kind}_mae_pp"] = round(float(np.average(d[ok], weights=w[ok]) * 100), 3) if ok.any() else float("nan")
    return {"as_of_ms": as_of, "open": int(res.report["open"]), "train": res.report["train"],
            "per_model": rows, "open_weighted_abs_error": err}  # fmt: skip
