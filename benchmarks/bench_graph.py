"""Structural balance (GraphSB reconstruction) in front of each base, on imbalanced node
classification: Cora and CiteSeer (step ratio 10, long-tailed ratio 100) and Echo's
simulated suggestion graph (time split).

    PYTHONPATH=. nice -n 10 python benchmarks/bench_graph.py --seeds 5 --epochs 150 \
        [--datasets cora,citeseer,echo] [--settings step10,lt100] [--methods reweight,oversample] \
        [--echo-lake DIR] [--out results.json]

Echo's graph: ``--echo-lake`` names a lake on which ``run`` and ``graph`` have run (for
instance one built with ``python -m echo simulate`` + ``run`` + ``graph``); suggestions
are split by time (oldest 60% train, next 20% val, newest 20% test), the classes are the
six outcomes and the minority classes refined, rewritten, deleted. Prints one JSON line
per (dataset, setting, base, method, balance) with mean and standard deviation over the
seeds of accuracy, balanced accuracy, macro-F1 and minority recall.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from echo.graph.data import Graph, imbalanced_split, planetoid, planetoid_root
from echo.graph.fit import FitConfig, fit

PLANETOID = planetoid_root()


def echo_graph(lake: str) -> tuple[Graph, list[int]]:
    from echo.graph.forecast import CLASSES, MINORITY, build_graph
    from echo.lake.readers import read_arrow
    from echo.lake.tables import SUGGESTION_EDGES, SUGGESTION_GRAPH

    nodes = read_arrow(lake, SUGGESTION_GRAPH).to_pandas()
    nodes = nodes[nodes["outcome"].isin(CLASSES)].sort_values(["shown_ts_ms", "suggestion_id"]).reset_index(drop=True)
    edges = read_arrow(lake, SUGGESTION_EDGES, ["src_id", "dst_id", "weight"]).to_pandas()
    x, ei = build_graph(nodes, edges)
    y = torch.tensor(nodes["outcome"].map({c: i for i, c in enumerate(CLASSES)}).to_numpy(np.int64))
    n = len(nodes)
    a, b = int(n * 0.6), int(n * 0.8)
    masks = [torch.zeros(n, dtype=torch.bool) for _ in range(3)]
    masks[0][:a], masks[1][a:b], masks[2][b:] = True, True, True
    return Graph(x, ei, y, len(CLASSES), *masks), [CLASSES.index(c) for c in MINORITY]


def summarize(runs: list[dict[str, float]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k in runs[0]:
        vals = [r[k] * 100 for r in runs]
        out[k] = round(statistics.mean(vals), 2)
        out[f"{k}_sd"] = round(statistics.stdev(vals), 2) if len(vals) > 1 else 0.0
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--datasets", default="cora,citeseer")
    p.add_argument("--settings", default="step10,lt100")
    p.add_argument("--bases", default="mlp,gcn,sage")
    p.add_argument("--methods", default="reweight,oversample")
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--epochs", type=int, default=150)
    p.add_argument("--patience", type=int, default=40)
    p.add_argument("--echo-lake", default="")
    p.add_argument("--out", default="")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    cfg = FitConfig(epochs=args.epochs, patience=args.patience)
    results = []
    work = Path(tempfile.mkdtemp(prefix="bench-graph-"))
    for ds in args.datasets.split(","):
        if ds == "echo":
            if not args.echo_lake:
                print("echo: skipped (no --echo-lake)", file=sys.stderr)
                continue
            g0, echo_minority = echo_graph(args.echo_lake)
            settings = ["time"]
        else:
            name = {"cora": "Cora", "citeseer": "CiteSeer"}[ds]
            if not (PLANETOID / name / "raw").is_dir():
                print(f"{ds}: skipped (no {PLANETOID / name / 'raw'})", file=sys.stderr)
                continue
            g0 = planetoid(PLANETOID, name, workdir=work)
            settings = args.settings.split(",")
        for setting in settings:
            for base in args.bases.split(","):
                for method in args.methods.split(","):
                    for bal in (False, True):
                        if base == "mlp" and bal:
                            continue  # the MLP ignores the graph: identical by construction
                        runs, t0 = [], time.monotonic()
                        for seed in range(args.seeds):
                            if ds == "echo":
                                g, minority = g0, echo_minority
                            else:
                                kind, ratio = ("step", 10.0) if setting == "step10" else ("lt", 100.0)
                                n_max = 20 if kind == "step" else 100
                                tr, va, te, minority = imbalanced_split(
                                    g0.y, g0.num_classes, kind=kind, ratio=ratio, n_max=n_max, n_val=30, seed=seed
                                )
                                g = g0.with_masks(tr, va, te)
                            r = fit(g, base=base, method=method, balance=bal, minority=minority, seed=seed, cfg=cfg)
                            runs.append(r.metrics)
                        row = {"dataset": ds, "setting": setting, "base": base, "method": method,
                               "balance": bal, "seeds": args.seeds, **summarize(runs),
                               "seconds": round(time.monotonic() - t0, 1)}  # fmt: skip
                        results.append(row)
                        print(json.dumps(row), flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
