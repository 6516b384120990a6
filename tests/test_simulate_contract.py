"""Simulated events conform to CONTRACT.md, and the truth follows its section 3."""

from __future__ import annotations

import itertools
import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq
import pytest
from test_simulate_support import OPTIONAL, check, ingest, make_corpus, read_raw, replay_outcomes

from echo.simulate import FaultConfig, SimConfig, simulate
from echo.simulate.corpus import language_of


@pytest.fixture(scope="module")
def clean_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, list[dict[str, Any]]]:
    base = tmp_path_factory.mktemp("simclean")
    corpus = make_corpus(base / "corpus")
    cfg = SimConfig(users=4, days=2, seed=7, corpus=str(corpus), batches=3, shards=2, workers=1, write_docs=True)
    result = simulate(cfg, FaultConfig(faults="none"), out=base / "out")
    events, _ = ingest(result.batch_dirs)
    return result, events


def test_every_record_is_a_valid_event(clean_run: tuple[Any, list[dict[str, Any]]]) -> None:
    result, _ = clean_run
    n = 0
    for d in result.batch_dirs:
        for _, raw in read_raw(d):
            reason, rec = check(raw)
            assert reason is None, (reason, raw)
            assert rec is not None
            for k, tp in OPTIONAL.get(rec["event_type"], {}).items():
                assert k not in rec or isinstance(rec[k], tp)
            if rec["event_type"] == "rejected":
                assert rec.get("reason") in (None, "escape", "typed_over", "timeout", "other")
            assert rec["language"] == language_of(rec["doc_id"].split(":", 1)[1].split("#")[0])
            n += 1
    assert n == result.summary["events"]["clean"] == result.records


def test_versions_rise_by_one_per_change(clean_run: tuple[Any, list[dict[str, Any]]]) -> None:
    _, events = clean_run
    versions: dict[str, list[int]] = defaultdict(list)
    for e in events:
        if e["event_type"] in ("edit", "accepted"):
            versions[e["doc_id"]].append(e["doc_version"])
    for vs in versions.values():
        assert sorted(vs) == list(range(1, len(vs) + 1))


def test_changes_are_in_time_order_per_document(clean_run: tuple[Any, list[dict[str, Any]]]) -> None:
    _, events = clean_run
    last: dict[str, tuple[int, int]] = {}
    for e in sorted(events, key=lambda e: (e["doc_id"], e["doc_version"], e["event_type"] != "shown")):
        if e["event_type"] in ("edit", "accepted"):
            prev = last.get(e["doc_id"])
            assert prev is None or prev[1] <= e["ts_ms"]
            last[e["doc_id"]] = (e["doc_version"], e["ts_ms"])


def test_replaying_changes_reproduces_documents(clean_run: tuple[Any, list[dict[str, Any]]]) -> None:
    result, events = clean_run
    docs = {}
    for f in sorted((result.out / "docs").glob("*.jsonl")):
        for line in f.read_text(encoding="utf-8").splitlines():
            d = json.loads(line)
            docs[d["doc_id"]] = d
    by_doc: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for e in events:
        by_doc[e["doc_id"]].append(e)
    assert set(by_doc) <= set(docs)
    checked_shown = 0
    for doc_id, evs in by_doc.items():
        text = docs[doc_id]["initial_text"]
        views = sorted(evs, key=lambda e: (e["doc_version"], e["event_type"] not in ("edit", "accepted")))
        for e in views:
            if e["event_type"] == "edit":
                assert e["offset"] >= 0 and e["offset"] + e["delete_len"] <= len(text)
                text = text[: e["offset"]] + e["insert_text"] + text[e["offset"] + e["delete_len"] :]
            elif e["event_type"] == "accepted":
                assert 0 <= e["offset"] <= len(text)
                text = text[: e["offset"]] + e["accepted_text"] + text[e["offset"] :]
            elif e["event_type"] == "shown":
                assert text[: e["offset"]].endswith(e["prefix"])
                assert text[e["offset"] :].startswith(e.get("suffix", ""))
                checked_shown += 1
        assert text == docs[doc_id]["final_text"]
        assert max(e["doc_version"] for e in evs) == docs[doc_id]["version"]
    assert checked_shown > 0


def test_truth_equals_independent_replay_of_contract(clean_run: tuple[Any, list[dict[str, Any]]]) -> None:
    result, events = clean_run
    truth = pq.read_table(result.truth_path).to_pylist()
    replay = replay_outcomes(events)
    assert {r["suggestion_id"] for r in truth} == set(replay)
    for row in truth:
        outcome, final, sim = replay[row["suggestion_id"]]
        assert (row["outcome"], row["final_text"]) == (outcome, final)
        if sim is None:
            assert row["edit_similarity"] is None
        else:
            assert row["edit_similarity"] == pytest.approx(sim, abs=1e-12)


def test_truth_covers_every_outcome_of_an_accept(clean_run: tuple[Any, list[dict[str, Any]]]) -> None:
    result, _ = clean_run
    outcomes = set(pd.read_parquet(result.truth_path)["outcome"])
    assert {"kept", "refined", "deleted", "rejected", "ignored"} <= outcomes


def test_partial_accepts_continue_at_end_of_accepted_text(clean_run: tuple[Any, list[dict[str, Any]]]) -> None:
    _, events = clean_run
    acc: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for e in events:
        if e["event_type"] == "accepted":
            acc[e["suggestion_id"]].append(e)
    multi = [sorted(v, key=lambda e: e["doc_version"]) for v in acc.values() if len(v) > 1]
    assert multi
    for chain in multi:
        for prev, nxt in itertools.pairwise(chain):
            assert nxt["offset"] == prev["offset"] + len(prev["accepted_text"])
            assert nxt["doc_version"] == prev["doc_version"] + 1


def test_sessions_break_both_shorter_and_longer_than_gap(clean_run: tuple[Any, list[dict[str, Any]]]) -> None:
    _, events = clean_run
    by_user: dict[str, list[int]] = defaultdict(list)
    for e in events:
        by_user[e["user_id"]].append(e["ts_ms"])
    gaps = [b - a for ts in by_user.values() for a, b in zip(sorted(ts), sorted(ts)[1:], strict=False)]
    assert any(g > 1_800_000 for g in gaps)
    assert any(60_000 <= g <= 1_800_000 for g in gaps)


def test_several_languages_models_and_documents(clean_run: tuple[Any, list[dict[str, Any]]]) -> None:
    _, events = clean_run
    assert len({e["language"] for e in events}) >= 2
    assert len({e["model_id"] for e in events if e["event_type"] == "shown"}) == 3
    per_user_docs = defaultdict(set)
    for e in events:
        per_user_docs[e["user_id"]].add(e["doc_id"])
    assert all(len(d) >= 2 for d in per_user_docs.values())
    assert all(doc.startswith(u + ":") for u, ds in per_user_docs.items() for doc in ds)


def test_offsets_count_code_points(tmp_path: Path) -> None:
    corpus = make_corpus(tmp_path / "c")
    for p in list(corpus.rglob("*.py")) + list(corpus.rglob("*.go")):
        p.unlink()
    cfg = SimConfig(users=1, days=1, seed=3, corpus=str(corpus), workers=1, write_docs=True)
    result = simulate(cfg, FaultConfig(faults="none"), out=tmp_path / "o")
    events, _ = ingest(result.batch_dirs)
    assert any(any(ord(ch) > 127 for ch in e.get("prefix", "")) for e in events if e["event_type"] == "shown")
    test_replaying_changes_reproduces_documents((result, events))
