"""CONTRACT.md section 4: batch by batch (late, duplicate, out-of-order events) gives
exactly the tables of one run over all batches; re-running a batch changes nothing."""

from __future__ import annotations

import json
import os
import random
import uuid
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from echo.lake.tables import ACCEPTANCE_METRICS, SUGGESTIONS
from tests.conftest import CONTRACT_SAMPLE
from tests.helpers import read_table, run_stages, write_jsonl

T0 = 1_700_000_000_000
COMPARED = {
    "bronze/events": ["event_id", "content_hash"],
    "bronze/quarantine": ["record_hash", "reason"],
    "silver/sessions": ["session_id", "user_id", "start_ts_ms", "end_ts_ms", "n_events", "n_docs"],
    # every column: the bounded replay must give each row exactly
    "silver/suggestions": list(SUGGESTIONS.columns),
    "gold/acceptance_metrics": list(ACCEPTANCE_METRICS.columns),
}  # fmt: skip


def snapshot(lake: str) -> dict[str, list[tuple]]:
    out = {}
    for table, cols in COMPARED.items():
        df = read_table(lake, table)[cols].astype(object).where(lambda d: pd.notna(d), None)
        out[table] = sorted(map(tuple, df.itertuples(index=False)), key=repr)
    return out


def one_run_vs_batches(batches: list[Path], tmp: Path, *extra: str) -> tuple[dict, dict]:
    whole = str(tmp / f"whole-{uuid.uuid4().hex[:6]}")
    run_stages(batches, whole, *extra)
    inc = str(tmp / f"inc-{uuid.uuid4().hex[:6]}")
    for b in batches:
        run_stages([b], inc, *extra)
    return snapshot(whole), snapshot(inc)


@st.composite
def event_streams(draw: st.DrawFn) -> list[dict]:
    """A few users typing into a few documents: suggestions shown, accepted (sometimes
    partially, then continued), rejected, edited around and inside; time gaps both
    shorter and longer than the session gap; duplicates and conflicting duplicates."""
    rnd = random.Random(draw(st.integers(0, 2**32 - 1)))
    events: list[dict] = []
    n = 0
    for u in range(draw(st.integers(1, 2))):
        ts = T0 + rnd.randrange(0, 10_000)
        for d in range(rnd.randint(1, 2)):
            doc, text, version = f"u{u}:d{d}", "", 0

            def base(etype: str) -> dict:  # reads the loop's current ts, user, doc, version
                nonlocal n
                n += 1
                return {"event_id": f"e{n}", "event_type": etype, "ts_ms": ts, "user_id": f"u{u}",  # noqa: B023
                        "doc_id": doc, "doc_version": version,  # noqa: B023
                        "language": rnd.choice(["python", "go"])}  # fmt: skip

            for step in range(draw(st.integers(3, 14))):
                ts += rnd.choice([500, 3_000, 60_000, 400_000, 1_800_000, 1_800_001, 2_500_000])
                kind = rnd.random()
                if kind < 0.35:
                    sid = f"s{u}{d}{step}"
                    prop = rnd.choice(["x = 1", "return a + b", "héllo 🎉", "for i in r:\n  pass"])
                    off = rnd.randint(0, len(text))
                    e = base("shown")
                    e.update(suggestion_id=sid, model_id=rnd.choice(["m1", "m2"]), offset=off, text=prop,
                             prefix=text[:off], suffix=text[off:])  # fmt: skip
                    events.append(e)
                    r = rnd.random()
                    if r < 0.6:
                        cut = rnd.randint(1, len(prop))
                        for piece in ([prop] if rnd.random() < 0.7 else [prop[:cut], prop[cut:]]):
                            if not piece:
                                continue
                            version += 1
                            ts += 700
                            e = base("accepted")
                            e.update(suggestion_id=sid, offset=off, accepted_text=piece)
                            events.append(e)
                            text = text[:off] + piece + text[off:]
                            off += len(piece)
                    elif r < 0.8:
                        e = base("rejected")
                        e.update(suggestion_id=sid, reason="escape")
                        events.append(e)
                else:
                    p = rnd.randint(0, len(text))

                    dl = rnd.randint(0, min(4, len(text) - p))
                    ins = rnd.choice(["", "y", "zz", "ö"])
                    version += 1
                    e = base("edit")
                    e.update(offset=p, delete_len=dl, insert_text=ins)
                    events.append(e)
                    text = text[:p] + ins + text[p + dl :]
    # transport: duplicates and conflicting duplicates
    for e in list(events):
        r = rnd.random()
        if r < 0.1:
            events.append(dict(e))
        elif r < 0.13:
            events.append({**e, "ts_ms": e["ts_ms"] + 1})
    # malformed records: quarantined once, whichever batch they arrive in
    for i in range(rnd.randint(0, 2)):
        events.append(rnd.choice([f'{{"event_id": "bad{i}", "event_type": "shown"',  # invalid_json
                                  {"event_id": f"neg{i}", "event_type": "edit", "ts_ms": T0, "user_id": "u0",
                                   "doc_id": "u0:d0", "doc_version": -1, "offset": 0, "delete_len": 0,
                                   "insert_text": ""}]))  # fmt: skip
    return events


@st.composite
def split_streams(draw: st.DrawFn) -> tuple[list[dict], list[int]]:
    events = draw(event_streams())
    order = draw(st.permutations(range(len(events))))
    k = draw(st.integers(2, 3))
    cuts = sorted(draw(st.lists(st.integers(0, len(events)), min_size=k - 1, max_size=k - 1)))
    return [events[i] for i in order], cuts


@settings(
    max_examples=int(os.environ.get("ECHO_PROPERTY_EXAMPLES", "2")),  # make test-slow: 10
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
    derandomize=bool(os.environ.get("CI")),
)
@given(stream=split_streams())
@pytest.mark.property
@pytest.mark.slow  # the contract sample in three batches stays in the default run
def test_random_batch_splits_give_the_tables_of_one_run(spark, tmp_path, stream):
    events, cuts = stream
    bounds = [0, *cuts, len(events)]
    d = tmp_path / uuid.uuid4().hex[:8]
    batches = [write_jsonl(d / f"b{i}" / "e.jsonl", events[bounds[i] : bounds[i + 1]] or [""]) for i in range(len(bounds) - 1)]
    whole, inc = one_run_vs_batches(batches, d)
    assert inc == whole


def test_contract_sample_in_three_batches_equals_one_run(spark, tmp_path, backend):
    lines = (CONTRACT_SAMPLE / "events.jsonl").read_bytes().split(b"\n")
    thirds = [lines[i::3] for i in range(3)]  # late and out-of-order across batches
    batches = [write_jsonl(tmp_path / f"b{i}" / "e.jsonl", part) for i, part in enumerate(thirds)]
    whole, inc = one_run_vs_batches(batches, tmp_path, "--lake-backend", backend)
    assert inc == whole
    assert len(whole["silver/suggestions"]) == len(json.loads((CONTRACT_SAMPLE / "expected.json").read_text())["suggestions"])


def test_rerunning_a_batch_changes_nothing(spark, tmp_path):
    lines = (CONTRACT_SAMPLE / "events.jsonl").read_bytes().split(b"\n")[:300]
    batch = write_jsonl(tmp_path / "b" / "e.jsonl", lines)
    lake = str(tmp_path / "lake")
    run_stages([batch], lake)
    before = snapshot(lake)
    run_stages([batch], lake)
    assert snapshot(lake) == before


class Interrupted(Exception):
    pass


@pytest.mark.slow  # interrupted runs stay in the default run through test_crash (a killed run, rerun)
def test_interrupted_stage_leaves_tables_and_next_run_completes(spark, tmp_path, monkeypatch):
    import echo.jobs.track as track_job

    lines = (CONTRACT_SAMPLE / "events.jsonl").read_bytes().split(b"\n")
    batch = write_jsonl(tmp_path / "b" / "e.jsonl", lines)
    clean = str(tmp_path / "clean")
    run_stages([batch], clean)

    lake = str(tmp_path / "lake")
    run_stages([batch], lake, stages=("ingest", "sessionize"))

    def boom(*a, **k):
        raise Interrupted("killed before the commit")

    monkeypatch.setattr(track_job, "replace_rows", boom)
    with pytest.raises(Interrupted):
        run_stages([batch], lake, stages=("track",))
    assert read_table(lake, "silver/suggestions").empty  # created, nothing committed

    monkeypatch.undo()
    real_set = track_job.set_watermark

    def die_after_commit(*a, **k):
        raise Interrupted("killed after the tables, before the watermark")

    monkeypatch.setattr(track_job, "set_watermark", die_after_commit)
    with pytest.raises(Interrupted):
        run_stages([batch], lake, stages=("track",))
    monkeypatch.setattr(track_job, "set_watermark", real_set)
    run_stages([batch], lake, stages=("track",))
    assert snapshot(lake) == snapshot(clean)
