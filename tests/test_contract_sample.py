"""The contract sample (../shared/examples/contract-sample) through the real pipeline:
counts, quarantine, sessions, suggestions and metrics equal expected.json."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from tests.conftest import BACKENDS, CONTRACT_SAMPLE, skip_without_delta_spark
from tests.helpers import read_table, run_stages

pytestmark = pytest.mark.skipif(not CONTRACT_SAMPLE.is_dir(), reason="../shared/examples/contract-sample is absent")


@pytest.fixture(scope="module")
def expected() -> dict:
    return json.loads((CONTRACT_SAMPLE / "expected.json").read_text())


@pytest.fixture(scope="module", params=BACKENDS)
def sample_backend(request, spark) -> str:
    """The same checks on each Delta backend (delta-spark skips where it cannot run)."""
    if request.param == "delta-spark":
        skip_without_delta_spark(spark)
    return request.param


@pytest.fixture(scope="module")
def sample_lake(spark, sample_backend, tmp_path_factory) -> str:
    lake = str(tmp_path_factory.mktemp("sample") / "lake")
    run_stages([CONTRACT_SAMPLE / "events.jsonl"], lake, "--lake-backend", sample_backend)
    return lake


def test_ingest_counts_match_expected(sample_lake, expected):
    runs = read_table(sample_lake, "bronze/ingest_runs")
    assert len(runs) == 1
    r = runs.iloc[0]
    c = expected["counts"]
    assert (r.records_read, r.kept, r.duplicates, r.quarantined) == (c["records_read"], c["kept"], c["duplicates"], c["quarantined"])
    assert r.records_read == r.kept + r.duplicates + r.quarantined


def test_quarantine_lines_and_reasons_match_expected(sample_lake, expected):
    q = read_table(sample_lake, "bronze/quarantine")
    got = sorted(zip(q.line_no.astype(int), q.reason, strict=True))
    want = sorted((x["line_no"], x["reason"]) for x in expected["quarantine"])
    assert got == want
    assert set(q.source) == {str(Path(CONTRACT_SAMPLE / "events.jsonl").resolve())}


def test_events_are_unique_by_event_id(sample_lake, expected):
    ev = read_table(sample_lake, "bronze/events")
    assert ev.event_id.is_unique
    assert len(ev) == expected["counts"]["kept"]


def test_sessions_match_expected(sample_lake, expected):
    s = read_table(sample_lake, "silver/sessions")
    cols = ["session_id", "user_id", "start_ts_ms", "end_ts_ms", "n_events"]
    got = sorted(tuple(r) for r in s[cols].itertuples(index=False))
    want = sorted(tuple(x[c] for c in cols) for x in expected["sessions"])
    assert got == want


def _norm(v):
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return None
    return v


COLS = ["suggestion_id", "session_id", "user_id", "doc_id", "model_id", "language", "shown_ts_ms",
        "proposal", "accepted_text", "final_text", "outcome", "prefix", "suffix"]  # fmt: skip


def test_suggestions_match_expected(sample_lake, expected):
    s = read_table(sample_lake, "silver/suggestions").set_index("suggestion_id", drop=False)
    want = {x["suggestion_id"]: x for x in expected["suggestions"]}
    assert set(s.index) == set(want)
    mismatches = []
    for sid, w in want.items():
        row = s.loc[sid]
        for c in COLS:
            g = _norm(row[c])
            g = int(g) if c == "shown_ts_ms" and g is not None else g
            if g != w[c]:
                mismatches.append((sid, c, g, w[c]))
        ws, gs = w["edit_similarity"], _norm(row["edit_similarity"])
        if (ws is None) != (gs is None) or (ws is not None and abs(ws - gs) > 1e-9):
            mismatches.append((sid, "edit_similarity", gs, ws))
    assert mismatches == []


def test_acceptance_metrics_match_expected(sample_lake, expected):
    m = read_table(sample_lake, "gold/acceptance_metrics")
    got = {(r.model_id, r.language, str(r.day)): (int(r.shown), int(r.accepted), r.acceptance_rate) for r in m.itertuples()}
    want = {(x["model_id"], x["language"], x["day"]): (x["shown"], x["accepted"], x["acceptance_rate"]) for x in expected["acceptance_metrics"]}
    assert got.keys() == want.keys()
    for k, (shown, acc, rate) in want.items():
        assert got[k][:2] == (shown, acc)
        assert got[k][2] == pytest.approx(rate)


def test_reingesting_the_sample_changes_nothing(sample_lake, sample_backend, spark):
    before = {t: read_table(sample_lake, t).shape for t in ("bronze/events", "bronze/quarantine", "silver/sessions", "silver/suggestions")}
    run_stages([CONTRACT_SAMPLE / "events.jsonl"], sample_lake, "--lake-backend", sample_backend)
    runs = read_table(sample_lake, "bronze/ingest_runs").sort_values("run_no")
    last = runs.iloc[-1]
    assert (last.kept, last.quarantined, last.duplicates) == (0, 0, last.records_read)
    after = {t: read_table(sample_lake, t).shape for t in before}
    assert after == before
