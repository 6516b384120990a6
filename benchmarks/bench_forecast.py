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

import pandas as pd
import torch

from echo.graph.config import ForecastConfig
from echo.graph.forecast import early_backtest, forecast, replay_gap_check
from echo.lake.readers import read_arrow
from echo.lake.tables import SUGGESTION_EDGES, SUGGESTION_GRAPH

NODE_COLUMNS = ("suggestion_id", "user_id", "model_id", "language", "shown_ts_ms", "accepted_ts_ms",
                "known_ts_ms", "outcome", "features")  # fmt: skip


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
        "early_forecast_backtest": early_backtest(nodes, edges, cfg, share=args.backtest_share),
    }
    text = json.dumps(out, indent=1, default=float)
    print(text)
    if args.out:
        Path(args.out).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
