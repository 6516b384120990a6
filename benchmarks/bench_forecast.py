"""The outcome forecaster's two uses, measured on a simulated lake (docs/graph.md).

    PYTHONPATH=. nice -n 10 python benchmarks/bench_forecast.py --lake DEMO/lake \
        --truth DEMO/events/truth.parquet [--epochs 150] [--backtest-share 0.5] [--out results.json]

The lake needs ``graph`` to have run (``python -m echo graph --lake DIR``).

1. **replay_gap estimates**: the forecaster trained at the lake's end predicts every
   suggestion; for the ``replay_gap`` ones (whose outcome the contract cannot know) the
   accepted-outcome posterior is compared with the simulator's clean outcome
   (``truth.parquet``), beside a naive baseline (the class shares of the closed accepted
   suggestions).
2. **early forecast (backtest)**: the forecaster is trained as of an earlier time T (only
   suggestions closed by T; ``--backtest-share`` of the way through the shown times,
   moved to the moment with the most open horizons nearby) and forecasts the refine and
   delete rates of the suggestions still open at T, per model. They are compared with
   those suggestions' rates measured later (the lake's final outcomes) and with the
   naive forecast the loop would otherwise make: the measured rates of the suggestions
   closed by T.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from echo.graph.config import ForecastConfig
from echo.graph.forecast import forecast, replay_gap_check
from echo.lake.readers import read_arrow
from echo.lake.tables import SUGGESTION_EDGES, SUGGESTION_GRAPH

NODE_COLUMNS = ("suggestion_id", "user_id", "model_id", "language", "shown_ts_ms", "accepted_ts_ms",
                "known_ts_ms", "outcome", "features")  # fmt: skip
FINAL = ("ignored", "rejected", "kept", "refined", "rewritten", "deleted")


def _rate(s: pd.Series, c: str) -> float:
    return float((s == c).mean()) if len(s) else float("nan")


def backtest(nodes: pd.DataFrame, edges: pd.DataFrame, cfg: ForecastConfig, share: float, window_ms: int) -> dict[str, Any]:
    shown = np.sort(nodes["shown_ts_ms"].to_numpy())
    t0 = int(shown[int(share * (len(shown) - 1))])
    # the moment near t0 (within the next quarter of the shows) with the most shows in the window before it
    cands = shown[(shown >= t0)][: max(1, len(shown) // 4)]
    counts = np.searchsorted(shown, cands, side="right") - np.searchsorted(shown, cands - window_ms, side="left")
    as_of = int(cands[int(np.argmax(counts))])
    res = forecast(nodes, edges, ForecastConfig(**{**cfg.__dict__, "as_of_ms": as_of}))
    p = res.predictions.merge(nodes[["suggestion_id", "model_id"]], on="suggestion_id")
    final = nodes.set_index("suggestion_id")["outcome"]
    p["final"] = p["suggestion_id"].map(final)
    rows = []
    for model, g in p.groupby(p["model_id"].fillna("(none)")):
        op = g[g["horizon_open"] & g["final"].isin(FINAL)]
        cl = g[g["used_for_training"] | (~g["horizon_open"] & g["outcome"].isin(FINAL))]
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


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lake", required=True)
    ap.add_argument("--truth", required=True)
    ap.add_argument("--epochs", type=int, default=150)
    ap.add_argument("--base", default="sage")
    ap.add_argument("--method", default="reweight")
    ap.add_argument("--no-balance", action="store_true")
    ap.add_argument("--backtest-share", type=float, default=0.5)
    ap.add_argument("--out", default="")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    nodes = read_arrow(args.lake, SUGGESTION_GRAPH, list(NODE_COLUMNS)).to_pandas()
    edges = read_arrow(args.lake, SUGGESTION_EDGES, ["src_id", "dst_id", "weight"]).to_pandas()
    truth = pd.read_parquet(args.truth, columns=["suggestion_id", "outcome"])
    cfg = ForecastConfig(base=args.base, method=args.method, structural_balance=not args.no_balance, epochs=args.epochs)
    full = forecast(nodes, edges, cfg)
    out = {
        "forecaster": f"{'graphsb+' if cfg.structural_balance else ''}{cfg.base}+{cfg.method}",
        "nodes": len(nodes),
        "replay_gap": replay_gap_check(full.predictions, truth),
        "val_metrics": full.report["val_metrics"],
        "early_forecast_backtest": backtest(nodes, edges, cfg, args.backtest_share, cfg.refine_window_s * 1000),
    }
    text = json.dumps(out, indent=1, default=float)
    print(text)
    if args.out:
        Path(args.out).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
