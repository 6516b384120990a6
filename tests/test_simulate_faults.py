"""Transport faults: injected at the rates asked, counted exactly, and marked in the truth."""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any

import pyarrow.parquet as pq
import pytest
from test_simulate_support import ingest, make_corpus, read_raw, replay_outcomes

from echo.simulate import FaultConfig, SimConfig, simulate

MALFORMED = ("invalid_json", "missing_field", "wrong_type", "unknown_event_type", "negative_value",
             "text_too_large", "conflicting_duplicate")  # fmt: skip
RATES = dict(
    duplicate_rate=0.05, late_rate=0.05, out_of_order_rate=0.05, clock_skew_rate=0.5, lost_edit_rate=0.004,
    ambiguous_version_rate=0.004, invalid_json_rate=0.004, missing_field_rate=0.004, wrong_type_rate=0.004,
    unknown_event_type_rate=0.004, negative_value_rate=0.004, text_too_large_rate=0.0005,
    conflicting_duplicate_rate=0.004,
)  # fmt: skip


@pytest.fixture(scope="module")
def faulty(tmp_path_factory: pytest.TempPathFactory) -> Any:
    base = tmp_path_factory.mktemp("simfaults")
    corpus = make_corpus(base / "corpus")
    cfg = SimConfig(users=6, days=2, seed=11, corpus=str(corpus), batches=4, shards=3, workers=1)
    return simulate(cfg, FaultConfig(faults="none", **RATES), out=base / "out")


def _within(count: int, rate: float, n: int) -> bool:
    expect = rate * n
    return abs(count - expect) <= 5 * math.sqrt(max(expect * (1 - rate), 1.0)) + 1


def test_fault_counts_follow_the_rates(faulty: Any) -> None:
    inj = faulty.summary["faults"]["injected"]
    n = faulty.summary["events"]["clean"]
    edits = faulty.summary["events"]["by_type"]["edit"] + inj["lost_edit"]
    for kind in ("duplicate", "invalid_json", "missing_field", "wrong_type", "unknown_event_type",
                 "negative_value", "text_too_large", "conflicting_duplicate", "out_of_order"):  # fmt: skip
        assert _within(inj[kind], RATES[f"{kind}_rate"], n), kind
    assert _within(inj["lost_edit"], RATES["lost_edit_rate"], edits)
    assert _within(inj["ambiguous_version"], RATES["ambiguous_version_rate"], edits)
    assert 0 < inj["late"] <= n * 0.1
    assert 0 < inj["clock_skew_users"] <= 6


def test_quarantine_and_duplicate_counts_in_files_equal_summary(faulty: Any) -> None:
    _, counts = ingest(faulty.batch_dirs)
    inj = faulty.summary["faults"]["injected"]
    for kind in MALFORMED:
        assert counts.get(kind, 0) == inj[kind], kind
    assert counts.get("duplicate", 0) == inj["duplicate"]


def test_records_in_files_add_up(faulty: Any) -> None:
    inj = faulty.summary["faults"]["injected"]
    n_records = sum(1 for d in faulty.batch_dirs for _ in read_raw(d))
    extra = inj["duplicate"] + inj["ambiguous_version"] + sum(inj[k] for k in MALFORMED)
    assert n_records == faulty.summary["events"]["clean"] + inj["duplicate"] + sum(inj[k] for k in MALFORMED)
    assert n_records == faulty.records
    assert extra > 0


def test_lost_and_ambiguous_versions_show_in_delivered_data(faulty: Any) -> None:
    events, _ = ingest(faulty.batch_dirs)
    versions: dict[str, dict[int, set[tuple[Any, ...]]]] = defaultdict(lambda: defaultdict(set))
    for e in events:
        if e["event_type"] in ("edit", "accepted"):
            versions[e["doc_id"]][e["doc_version"]].add((e.get("offset"), e.get("insert_text"), e.get("accepted_text")))
    ambiguous = sum(1 for vs in versions.values() for group in vs.values() if len(group) > 1)
    missing = sum(max(vs) - len(vs) for vs in versions.values())
    inj = faulty.summary["faults"]["injected"]
    assert ambiguous == inj["ambiguous_version"]
    assert missing <= inj["lost_edit"] <= missing + len(versions)


def test_truth_of_untouched_suggestions_holds_on_faulty_delivery(faulty: Any) -> None:
    events, _ = ingest(faulty.batch_dirs)
    replay = replay_outcomes(events)
    truth = pq.read_table(faulty.truth_path).to_pylist()
    untouched = [r for r in truth if not r["touched"]]
    touched = [r for r in truth if r["touched"]]
    assert untouched and touched
    for r in untouched:
        assert replay[r["suggestion_id"]][:2] == (r["outcome"], r["final_text"]), r["suggestion_id"]
    assert any(replay[r["suggestion_id"]][0] == "replay_gap" for r in touched)


def test_parquet_output_keeps_the_contract_columns(tmp_path: Any) -> None:
    corpus = make_corpus(tmp_path / "c")
    cfg = SimConfig(users=2, days=1, seed=5, corpus=str(corpus), format="parquet", batches=2, workers=1)
    result = simulate(cfg, FaultConfig(faults="heavy"), out=tmp_path / "o")
    files = sorted(result.out.glob("batch-*/*.parquet"))
    assert files
    names = pq.read_schema(files[0]).names
    assert names[:6] == ["event_id", "event_type", "ts_ms", "user_id", "doc_id", "doc_version"]
    _, counts = ingest(result.batch_dirs)
    inj = result.summary["faults"]["injected"]
    assert inj["invalid_json"] == inj["wrong_type"] == 0
    for kind in MALFORMED:
        assert counts.get(kind, 0) == inj[kind], kind
