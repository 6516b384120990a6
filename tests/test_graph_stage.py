"""The graph stage (node features, edges) and the forecast command on a small lake."""

from __future__ import annotations

import datetime
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from events import Ev
from helpers import read_table, run_stages, write_jsonl

from echo.graph.config import GraphConfig
from echo.lake.tables import OUTCOME_ESTIMATES, OUTCOME_PREDICTIONS, SUGGESTIONS
from echo.stages.graph import (
    FEATURE_INPUTS,
    OUTCOME_COLUMNS,
    SCALAR_FEATURES,
    edges,
    feature_names,
    nodes,
)

ROOT = Path(__file__).resolve().parents[1]
T0 = 1_709_510_400_000
CFG = GraphConfig(hash_dims=4, minhash_bands=2)


def _row(sid: str, shown: int, outcome: str, **kw: Any) -> dict[str, Any]:
    row = {f.name: None for f in SUGGESTIONS.schema.fields}
    row.update(suggestion_id=sid, session_id="u1/0", user_id="u1", doc_id="u1:d", model_id="m1",
               language="python", shown_ts_ms=shown, proposal="return x + 1", prefix="def f(x):\n    ",
               shown_offset=14, latency_ms=120, outcome=outcome, user_bucket=0,
               day=datetime.datetime.fromtimestamp(shown / 1000, datetime.timezone.utc).date())  # fmt: skip
    row.update(kw)
    return row


def _suggestions(spark: Any, rows: list[dict[str, Any]]) -> Any:
    return spark.createDataFrame([tuple(r[f.name] for f in SUGGESTIONS.schema.fields) for r in rows], SUGGESTIONS.schema)


def _accepted(sid: str, shown: int, outcome: str, final: str | None) -> dict[str, Any]:
    return _row(sid, shown, outcome, accepted_text="return x + 1", accepted_ts_ms=shown + 500, accepted_chars=12,
                final_text=final, edit_similarity=0.9, changes_applied=2, retained_chars=10, walk_end="horizon",
                horizon_ts_ms=shown + 600_500, accepted_doc_version=3)  # fmt: skip


def _features(df: Any) -> dict[str, list[float]]:
    return {r["suggestion_id"]: list(r["features"]) for r in df.select("suggestion_id", "features").collect()}


def test_feature_inputs_hold_no_outcome_derived_column() -> None:
    assert not set(FEATURE_INPUTS) & set(OUTCOME_COLUMNS)
    assert "outcome" not in FEATURE_INPUTS
    assert len(feature_names(CFG)) == len(SCALAR_FEATURES) + 16 + 2 * CFG.hash_dims


def test_node_features_compute_from_the_show_and_accept_columns_alone(spark: Any) -> None:
    rows = [_accepted("s1", T0, "refined", "return x + 2"), _row("s2", T0 + 60_000, "rejected")]
    full = _suggestions(spark, rows)
    # any read of another column would fail analysis here
    only = full.select(*FEATURE_INPUTS, "outcome")
    assert _features(nodes(only, CFG)) == _features(nodes(full, CFG))


def test_changing_a_suggestions_outcome_columns_leaves_every_feature_unchanged(spark: Any) -> None:
    base = [_row("s1", T0, "ignored"), _accepted("s2", T0 + 1_000, "kept", "return x + 1")]
    changed = [base[0], {**base[1], "outcome": "deleted", "final_text": "", "edit_similarity": 0.0,
                         "changes_applied": 9, "retained_chars": 0, "walk_end": "exhausted",
                         "horizon_ts_ms": T0 + 5_000}]  # fmt: skip
    a = _features(nodes(_suggestions(spark, base), CFG))
    b = _features(nodes(_suggestions(spark, changed), CFG))
    assert a == b
    assert len(a["s1"]) == len(feature_names(CFG))


def test_user_rates_use_only_outcomes_known_before_the_show(spark: Any) -> None:
    rows = [
        _accepted("s1", T0, "refined", "return x + 2"),  # known at T0 + 500 + 600 s
        _row("s2", T0 + 60_000, "ignored"),  # shown before s1 is known
        _row("s3", T0 + 700_000, "ignored"),  # shown after s1 is known
    ]
    f = _features(nodes(_suggestions(spark, rows), CFG))
    i_known = SCALAR_FEATURES.index("log_user_known")
    i_refine = SCALAR_FEATURES.index("user_refined_rate")
    assert f["s1"][i_known] == 0.0 and f["s2"][i_known] == 0.0
    assert f["s3"][i_known] > 0.0
    assert f["s3"][i_refine] > f["s2"][i_refine]


def test_edges_join_session_neighbours_close_documents_and_near_identical_contexts(spark: Any) -> None:
    rows = [
        _row("a1", T0, "ignored"),
        _row("a2", T0 + 10_000, "ignored"),
        _row("a3", T0 + 900_000, "ignored", doc_id="u1:other", prefix="completely different text here"),
        _row("b1", T0 + 20_000, "ignored", user_id="u2", session_id="u2/0", doc_id="u2:d"),
    ]
    e = {(r["src_id"], r["dst_id"], r["edge_type"]) for r in edges(_suggestions(spark, rows), CFG).collect()}
    assert ("a1", "a2", "session") in e and ("a2", "a3", "session") in e
    assert ("a1", "a2", "document") in e
    assert not any(t == "document" and "a3" in (s, d) for s, d, t in e)  # other document
    assert ("a1", "a2", "context") in e  # identical prefix tail
    assert not any(t == "context" and "a3" in (s, d) for s, d, t in e)
    assert not any("b1" in (s, d) for s, d, _ in e)  # a single-suggestion user has no edge
    assert all(s != d for s, d, _ in e)


def test_import_echo_and_the_graph_stage_stay_torch_free() -> None:
    code = ("import sys, echo, echo.cli, echo.graph, echo.graph.config, echo.stages.graph, echo.jobs.graph; "
            "sys.exit(1 if 'torch' in sys.modules or 'torch_geometric' in sys.modules else 0)")  # fmt: skip
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stderr


def _events(n_users: int = 2) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for u in range(n_users):
        ev = Ev(user=f"u{u}", t0=T0)
        t = T0 + u * 1_000
        for i in range(6):
            sid = f"u{u}-s{i}"
            out.append(ev.shown(sid, f"total += {i}", offset=0, ts=t))
            if i % 3 == 0:
                out.append(ev.accepted(sid, f"total += {i}", offset=0, ts=t + 500))
                if i == 3:
                    out.append(ev.edit(9, 1, "9", ts=t + 1_000))  # refined
            elif i % 3 == 1:
                out.append(ev.rejected(sid, ts=t + 500))
            t += 240_000  # the first suggestions close (refine window 600 s) before the last
    return out


def test_graph_and_forecast_cli_write_their_tables(spark: Any, lake: str, tmp_path: Path) -> None:
    from echo.cli import main

    pytest.importorskip("torch")
    run_stages([write_jsonl(tmp_path / "in" / "e.jsonl", _events())], lake)
    rep = tmp_path / "graph.json"
    assert main(["graph", "--lake", lake, "--quiet", "--hash-dims", "4", "--report", str(rep)]) == 0
    g = json.loads(rep.read_text())
    assert g["nodes_written"] == 12 and g["edges_written"] > 0
    nodes_pd = read_table(lake, "gold/suggestion_graph")
    assert len(nodes_pd) == 12 and nodes_pd["features"].map(len).nunique() == 1
    assert main(["graph", "--lake", lake, "--quiet", "--hash-dims", "4", "--report", str(rep)]) == 0
    assert json.loads(rep.read_text())["users"] == 0  # incremental: nothing new
    frep = tmp_path / "forecast.json"
    assert main(["forecast", "--lake", lake, "--quiet", "--epochs", "5", "--report", str(frep)]) == 0
    f = json.loads(frep.read_text())
    assert f["predictions_written"] == 12 and f["train"] > 0
    pred = read_table(lake, "gold/outcome_predictions")
    assert list(pred.columns) == OUTCOME_PREDICTIONS.columns
    probs = pred[[c for c in pred.columns if c.startswith("p_")]]
    assert ((probs.sum(axis=1) - 1.0).abs() < 1e-6).all()
    assert set(pred["forecaster"]) == {"graphsb+sage+reweight"}
    # the last suggestions are within a refine window of the newest event: open
    assert pred["horizon_open"].any() and not pred.loc[pred["horizon_open"], "used_for_training"].any()
    est = read_table(lake, "gold/outcome_estimates")
    assert list(est.columns) == OUTCOME_ESTIMATES.columns and est["shown"].sum() == 12


def test_forecast_without_a_graph_is_a_one_line_error(spark: Any, lake: str, tmp_path: Path, capsys: Any) -> None:
    from echo.cli import main

    run_stages([write_jsonl(tmp_path / "in" / "e.jsonl", _events(1))], lake, stages=("ingest",))
    assert main(["forecast", "--lake", lake, "--quiet"]) == 2
    assert "run 'graph' first" in capsys.readouterr().err
