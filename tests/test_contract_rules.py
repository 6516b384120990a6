"""Contract rules not covered elsewhere: session ties (2), reason order and the raw
record (1.2), the required columns and the metrics day (5), settings that take effect
and unreadable inputs (6). The pipeline runs through ``echo.cli.main``."""

from __future__ import annotations

import gzip
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from deltalake import DeltaTable

from echo.cli import main
from echo.sources import READ_ERROR, ReadTask, list_inputs, read_task
from echo.stages.validate import validate_json_line
from tests.conftest import CONTRACT_SAMPLE, ROOT
from tests.events import Ev, event
from tests.helpers import read_table, write_jsonl

T0 = 1_700_000_000_000
S = 1000
MIDNIGHT = 1_700_006_400_000  # 2023-11-15T00:00:00Z


def cli(argv: list[str], capsys: Any) -> tuple[int, str]:
    rc = main(argv)
    return rc, capsys.readouterr().err.strip()


def run_pipeline(events: list[Path], lake: str, *settings: str) -> None:
    argv = ["run", "--events", *map(str, events), "--lake", lake, "--quiet", *settings]
    assert main(argv) == 0


def versions(lake: str) -> dict[str, int | None]:
    out: dict[str, int | None] = {}
    for name in ("bronze/events", "bronze/quarantine", "bronze/ingest_runs"):
        path = Path(lake) / name
        out[name] = DeltaTable(str(path)).version() if (path / "_delta_log").is_dir() else None
    return out


def tables_in(lake: str) -> list[str]:
    """The lake's data tables (not ``_echo/lease``, the lake's coordination state)."""
    found = (str(p.parent.relative_to(lake)) for p in Path(lake).glob("*/*/_delta_log"))
    return sorted(t for t in found if t != "_echo/lease")


# -- section 1.2: the order of reasons (pure validation) ---------------------------------


def _shown(**over: Any) -> dict[str, Any]:
    e = {"event_id": "e1", "event_type": "shown", "ts_ms": 1, "user_id": "u", "doc_id": "d", "doc_version": 0,
         "suggestion_id": "s", "model_id": "m", "offset": 0, "text": "x", "prefix": "p"}  # fmt: skip
    e.update(over)
    return {k: v for k, v in e.items() if v is not ...}


def test_unknown_event_type_comes_before_negative_value():
    raw = json.dumps(_shown(event_type="suggested", doc_version=-1)).encode()
    assert validate_json_line(raw).reason == "unknown_event_type"


def test_invalid_json_comes_before_missing_field():
    raw = json.dumps(_shown(user_id=..., model_id="m\u00e9")).encode().replace(b"m\\u00e9", b"m\xff")
    assert b"\xff" in raw and b"user_id" not in raw
    assert validate_json_line(raw).reason == "invalid_json"


# -- one pipeline run over the contract sample and a few extra records -------------------

TIE_EVENTS = [  # (event_id suffix, ts_ms): two events at the same ts_ms, then one after a gap
    ("e-b", T0), ("e-a", T0), ("e-c", T0 + 1_800_001),
]  # fmt: skip


def _tie_events(user: str, order: list[int]) -> list[dict[str, Any]]:
    rows = []
    for i in order:
        eid, ts = TIE_EVENTS[i]
        rows.append(event("edit", f"{user}-{eid}", ts, i + 1, user_id=user, doc_id=f"{user}:d",
                          offset=0, delete_len=0, insert_text="x"))  # fmt: skip
    return rows


# a refused record with odd spacing, key order and non-ASCII text: raw is this text exactly
ODD_REFUSED = '{ "event_type":"edit",  "event_id":"q-1", "ts_ms":1, "user_id":"ü", "doc_id":"d", "doc_version":-1, "offset":0, "delete_len":0, "insert_text":"é€"}'


@pytest.fixture(scope="module")
def full(spark, tmp_path_factory) -> dict[str, Any]:
    if not CONTRACT_SAMPLE.is_dir():
        pytest.skip("../shared/examples/contract-sample is absent")
    d = tmp_path_factory.mktemp("rules")
    mid = Ev(user="midnight", t0=MIDNIGHT)
    extra = [
        mid.shown("mid-before", "a = 1", ts=MIDNIGHT - 1, model="m-midnight"),
        mid.shown("mid-after", "b = 2", ts=MIDNIGHT, model="m-midnight"),
        *_tie_events("tie-fwd", [0, 1, 2]),
        *_tie_events("tie-rev", [2, 1, 0]),
        ODD_REFUSED,
    ]
    conflict = dict(_tie_events("tie-fwd", [0])[0], insert_text="other")
    conflict_line = json.dumps(conflict, ensure_ascii=False, indent=None, separators=(",", ": "))
    extra.append(conflict_line)
    path = write_jsonl(d / "extra.jsonl", extra)
    lake = str(d / "lake")
    run_pipeline([CONTRACT_SAMPLE / "events.jsonl", path], lake)
    return {"lake": lake, "conflict_line": conflict_line}


# -- section 2 ---------------------------------------------------------------------------


def _sessions_of(full: dict[str, Any], user: str) -> list[tuple[str, int, int, int]]:
    s = read_table(full["lake"], "silver/sessions")
    s = s[s.user_id == user].sort_values("start_ts_ms")
    return [(r.session_id, int(r.start_ts_ms), int(r.end_ts_ms), int(r.n_events)) for r in s.itertuples()]


def test_events_with_equal_ts_ms_give_the_same_sessions_in_any_input_order(full):
    # ties by event_id: equal timestamps are one instant, never a gap, whatever the order
    # they arrive in; the sessions are a function of the events, not of the files
    want = [(T0, T0, 2), (T0 + 1_800_001, T0 + 1_800_001, 1)]
    for user in ("tie-fwd", "tie-rev"):
        got = _sessions_of(full, user)
        assert [s[1:] for s in got] == want
        assert [s[0] for s in got] == [f"{user}/{T0}", f"{user}/{T0 + 1_800_001}"]


# -- section 1.2: the raw record ---------------------------------------------------------


def test_quarantine_raw_reason_and_source_are_string_columns(full):
    fields = {f.name: f.type for f in DeltaTable(f"{full['lake']}/bronze/quarantine").schema().fields}
    assert {n: str(fields[n]) for n in ("raw", "reason", "source")} == dict.fromkeys(
        ("raw", "reason", "source"), 'PrimitiveType("string")'
    )


@pytest.mark.parametrize("reason", ["negative_value", "conflicting_duplicate"])
def test_quarantine_raw_holds_the_record_text_as_read(full, reason):
    q = read_table(full["lake"], "bronze/quarantine")
    want = ODD_REFUSED if reason == "negative_value" else full["conflict_line"]
    mine = q[q.source.str.endswith("extra.jsonl") & (q.reason == reason)]
    assert list(mine.raw) == [want]


# -- section 5 ---------------------------------------------------------------------------

EVENT_FIELDS = ["event_id", "event_type", "ts_ms", "user_id", "doc_id", "doc_version", "language", "client",
                "suggestion_id", "model_id", "offset", "text", "prefix", "suffix", "latency_ms",
                "accepted_text", "reason", "delete_len", "insert_text"]  # fmt: skip

REQUIRED = {
    "bronze/events": [*EVENT_FIELDS, "ingested_at"],
    "bronze/quarantine": ["raw", "reason", "source", "ingested_at"],
    "silver/sessions": ["session_id", "user_id", "start_ts_ms", "end_ts_ms", "n_events"],
    "silver/suggestions": ["suggestion_id", "session_id", "user_id", "doc_id", "model_id", "language",
                           "shown_ts_ms", "proposal", "accepted_text", "final_text", "outcome",
                           "edit_similarity"],
    "gold/refinement_pairs": ["suggestion_id", "prefix", "suffix", "proposal", "final_text", "outcome",
                              "language", "model_id", "split"],
    "gold/acceptance_metrics": ["model_id", "language", "day", "shown", "accepted", "acceptance_rate"],
}  # fmt: skip


@pytest.mark.parametrize("table", sorted(REQUIRED))
def test_every_table_has_the_contract_columns(full, table):
    columns = {f.name for f in DeltaTable(f"{full['lake']}/{table}").schema().fields}
    assert [c for c in REQUIRED[table] if c not in columns] == []


def test_metrics_day_is_the_utc_date_of_shown_ts_ms(full):
    m = read_table(full["lake"], "gold/acceptance_metrics")
    m = m[m.model_id == "m-midnight"]
    assert sorted((str(r.day), int(r.shown)) for r in m.itertuples()) == [("2023-11-14", 1), ("2023-11-15", 1)]


# -- section 6: settings take effect -----------------------------------------------------


def _settings_events() -> list[dict[str, Any]]:
    gap = Ev(user="gap", t0=T0)
    sim = Ev(user="sim", t0=T0)
    win = Ev(user="win", t0=T0)
    return [
        # two events 120 s apart: one session with the default gap, two with a 60 s gap
        gap.edit(0, 0, "a", ts=T0), gap.edit(1, 0, "b", ts=T0 + 120 * S),
        # 4 of 10 code points replaced 2 s after the accept: similarity 0.6
        sim.shown("s-sim", "abcdefghij", ts=T0), sim.accepted("s-sim", "abcdefghij", ts=T0 + 1 * S),
        sim.edit(0, 4, "WXYZ", ts=T0 + 2 * S),
        # 1 of 5 replaced 30 s after the accept: inside a 600 s window, outside a 10 s one
        win.shown("s-win", "hello", ts=T0), win.accepted("s-win", "hello", ts=T0 + 1 * S),
        win.edit(0, 1, "J", ts=T0 + 31 * S),
    ]  # fmt: skip


@pytest.fixture(scope="module")
def settings_runs(spark, tmp_path_factory) -> dict[str, str]:
    """One lake with the defaults and one per changed setting: the events are ingested
    once, and each lake, a copy of that one, runs sessionize and track with its setting."""
    d = tmp_path_factory.mktemp("settings")
    path = write_jsonl(d / "e.jsonl", _settings_events())
    ingested = str(d / "ingested")
    assert main(["ingest", "--events", str(path), "--lake", ingested, "--quiet"]) == 0
    runs = {
        "default": [],
        "gap": ["--session-gap-s", "60"],
        "similarity": ["--min-refine-similarity", "0.7"],
        "window": ["--refine-window-s", "10"],
    }
    lakes = {}
    for name, settings in runs.items():
        lakes[name] = str(d / name)
        shutil.copytree(ingested, lakes[name])
        for stage in ("sessionize", "track"):
            assert main([stage, "--lake", lakes[name], "--quiet", *settings]) == 0
    return lakes


def _outcome(lake: str, sid: str) -> str:
    s = read_table(lake, "silver/suggestions").set_index("suggestion_id")
    return str(s.loc[sid, "outcome"])


def test_session_gap_setting_changes_the_sessions(settings_runs):
    def n_sessions(lake: str) -> int:
        s = read_table(lake, "silver/sessions")
        return int((s.user_id == "gap").sum())

    assert (n_sessions(settings_runs["default"]), n_sessions(settings_runs["gap"])) == (1, 2)


def test_min_refine_similarity_setting_changes_refined_to_rewritten(settings_runs):
    got = (_outcome(settings_runs["default"], "s-sim"), _outcome(settings_runs["similarity"], "s-sim"))
    assert got == ("refined", "rewritten")


def test_refine_window_setting_changes_the_horizon(settings_runs):
    got = (_outcome(settings_runs["default"], "s-win"), _outcome(settings_runs["window"], "s-win"))
    assert got == ("refined", "kept")


# -- section 6: unreadable and corrupt inputs --------------------------------------------


def _truncated_gzip(path: Path) -> Path:
    """A .jsonl.gz cut short, long enough that its start decompresses (the probe passes)
    and the error shows only while reading it."""
    ev = Ev(user="trunc")
    lines = [json.dumps(ev.edit(0, 0, os.urandom(60_000).hex())) for _ in range(4)]
    data = gzip.compress(("\n".join(lines) + "\n").encode())
    path.write_bytes(data[: len(data) - 1000])
    return path


def _not_gzip(path: Path) -> Path:
    path.write_bytes(json.dumps(Ev().edit(0, 0, "a")).encode() + b"\n")  # plain text named .gz
    return path


def _not_parquet(path: Path) -> Path:
    path.write_bytes(b"PAR1" + b"\x00garbage" * 20)
    return path


def _assert_one_line_error_naming(err: str, path: Path) -> None:
    assert len(err.splitlines()) == 1, err
    assert err.startswith("echo-pipeline ingest: error:") and str(path) in err
    assert "Traceback" not in err and "Exception" not in err


@pytest.mark.parametrize("make, name", [(_not_gzip, "bad.jsonl.gz"), (_not_parquet, "bad.parquet")])
def test_corrupt_input_is_refused_before_a_lake_is_created(tmp_path, capsys, make, name):
    bad = make(tmp_path / name)
    lake = tmp_path / "lake"
    rc, err = cli(["ingest", "--events", str(bad), "--lake", str(lake), "--quiet"], capsys)
    assert rc != 0
    _assert_one_line_error_naming(err, bad)
    assert not lake.exists()


def test_corrupt_file_in_an_input_directory_is_named(tmp_path, capsys):
    write_jsonl(tmp_path / "in" / "a.jsonl", [Ev().edit(0, 0, "a")])
    bad = _not_gzip(tmp_path / "in" / "b.jsonl.gz")
    lake = tmp_path / "lake"
    rc, err = cli(["ingest", "--events", str(tmp_path / "in"), "--lake", str(lake), "--quiet"], capsys)
    assert rc != 0
    _assert_one_line_error_naming(err, bad)
    assert not lake.exists()


def test_truncated_gzip_read_task_ends_with_a_read_error_row(tmp_path):
    bad = _truncated_gzip(tmp_path / "t.jsonl.gz")
    (f,) = list_inputs([str(bad)])  # the probe reads the start only: it passes
    rows = list(read_task(ReadTask(f, 0, -1), max_text_bytes=1_048_576))
    reason, detail = rows[-1][6], rows[-1][7]
    assert reason == READ_ERROR
    assert str(bad) in detail and "ended before" in detail


def test_truncated_gzip_on_a_fresh_lake_creates_no_table(spark, tmp_path, capsys):
    bad = _truncated_gzip(tmp_path / "t.jsonl.gz")
    lake = str(tmp_path / "lake")
    rc, err = cli(["ingest", "--events", str(bad), "--lake", lake, "--quiet"], capsys)
    assert rc != 0
    _assert_one_line_error_naming(err, bad)
    assert tables_in(lake) == []


def test_truncated_gzip_leaves_every_table_at_its_version(spark, tmp_path, capsys):
    lake = str(tmp_path / "lake")
    good = write_jsonl(tmp_path / "good.jsonl", [Ev(user="g").edit(0, 0, "a"), "{not json"])
    assert main(["ingest", "--events", str(good), "--lake", lake, "--quiet"]) == 0
    before = versions(lake)
    bad = _truncated_gzip(tmp_path / "t.jsonl.gz")
    capsys.readouterr()
    rc, err = cli(["ingest", "--events", str(good), str(bad), "--lake", lake, "--quiet"], capsys)
    assert rc != 0
    _assert_one_line_error_naming(err, bad)
    assert versions(lake) == before and None not in before.values()


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0,
                    reason="running as root: file permissions do not stop root from reading")  # fmt: skip
def test_input_without_read_permission_is_a_one_line_error(tmp_path, capsys):
    f = write_jsonl(tmp_path / "locked.jsonl", [Ev().edit(0, 0, "a")])
    f.chmod(0)
    try:
        rc, err = cli(["ingest", "--events", str(f), "--lake", str(tmp_path / "lake")], capsys)
    finally:
        f.chmod(0o644)
    assert rc != 0
    _assert_one_line_error_naming(err, f)
    assert not (tmp_path / "lake").exists()


@pytest.mark.slow
def test_python_dash_m_echo_on_a_truncated_gzip_prints_our_line_and_no_traceback(tmp_path):
    # a separate process: what Spark's JVM and its Python workers print shows here too
    bad = _truncated_gzip(tmp_path / "t.jsonl.gz")
    p = subprocess.run(
        [sys.executable, "-m", "echo", "ingest", "--events", str(bad), "--lake", str(tmp_path / "lake"), "--quiet"],
        capture_output=True, text=True, timeout=600, cwd=ROOT,
    )  # fmt: skip
    assert p.returncode != 0
    ours = [line for line in p.stderr.splitlines() if "error" in line.lower()]
    assert len(ours) == 1 and ours[0].startswith("echo-pipeline ingest: error:") and str(bad) in ours[0]
    assert "Traceback" not in p.stderr and "Exception" not in p.stderr
