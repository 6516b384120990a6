"""Bounded incremental runs (docs/architecture.md, "Incremental runs"): the rules that
decide which state a late event can change, each checked against one run over all
batches, and the day partitions a batch rewrites."""

from __future__ import annotations

import os
from pathlib import Path

import pyarrow as pa
import pytest
from deltalake import DeltaTable

from echo.lake.tables import SUGGESTIONS
from tests.events import Ev
from tests.helpers import read_table, write_jsonl
from tests.test_incremental import one_run_vs_batches

DAY = 86_400_000
T0 = 1_700_006_400_000  # 2023-11-15 00:00 UTC
GAP = 1_800_000
WINDOW = 600_000
#: positions in the snapshot's silver/suggestions rows
OUTCOME, SESSION = SUGGESTIONS.columns.index("outcome"), SUGGESTIONS.columns.index("session_id")


def _batches(tmp: Path, *parts: list[dict]) -> list[Path]:
    return [write_jsonl(tmp / f"b{i}" / "e.jsonl", p) for i, p in enumerate(parts)]


def test_a_late_event_that_bridges_two_sessions_merges_them(spark, tmp_path):
    ev = Ev(user="m", t0=T0 + 3_600_000)
    a = ev.shown("s1", "x = 1")
    b = ev.shown("s2", "y = 2", ts=a["ts_ms"] + 2 * GAP)  # two sessions: the gap is 2 * GAP
    bridge = ev.edit(0, 0, "z", ts=a["ts_ms"] + GAP)  # exactly GAP from both: joins both
    whole, inc = one_run_vs_batches(_batches(tmp_path, [a, b], [bridge]), tmp_path)
    assert inc == whole
    assert [s[0] for s in whole["silver/sessions"]] == [f"m/{a['ts_ms']}"]
    assert {s[SESSION] for s in whole["silver/suggestions"]} == {f"m/{a['ts_ms']}"}


@pytest.mark.slow  # make test-slow; the bridge and orphan cases stay in the default run
def test_a_late_event_that_extends_a_session_moves_the_horizon(spark, tmp_path):
    from tests.helpers import run_stages

    ev = Ev(user="h", t0=T0 + 3_600_000)
    t = ev.t
    first = [ev.shown("s", "x = 1", ts=t), ev.accepted("s", "x = 1", ts=t + 1_000),
             ev.edit(4, 1, "2", ts=t + 3_501_000)]  # its own session: past the horizon  # fmt: skip
    other = Ev(user="h", doc="other", t0=t + 1_751_000)
    late = other.edit(0, 0, "#")  # joins the two sessions: the horizon moves past the edit
    batches = _batches(tmp_path, first, [late])
    window = ["--refine-window-s", "3600"]  # wider than the session gap, so the session end decides
    outcomes = {}
    for name, runs in {"whole": [batches], "inc": [[b] for b in batches], "first": [batches[:1]]}.items():
        lake = str(tmp_path / name)
        for run in runs:
            run_stages(run, lake, *window)
        s = read_table(lake, "silver/suggestions")
        outcomes[name] = list(zip(s.outcome, s.final_text, s.horizon_ts_ms, strict=True))
    assert outcomes["inc"] == outcomes["whole"] == [("refined", "x = 2", t + 3_501_000)]
    assert outcomes["first"] == [("kept", "x = 1", t + 1_000)]


def test_a_late_shown_resolves_an_orphan_of_another_document(spark, tmp_path):
    ev = Ev(user="o", doc="d1", t0=T0 + 3_600_000)
    acc = ev.accepted("s", "x = 1")
    other = Ev(user="o", doc="d2", t0=T0 + 3_600_000 - 5_000)
    shown = other.shown("s", "x = 1")
    lake_rows = one_run_vs_batches(_batches(tmp_path, [acc], [shown]), tmp_path)
    whole, inc = lake_rows
    assert inc == whole
    assert [r[OUTCOME] for r in whole["silver/suggestions"]] == ["ignored"]  # no orphan row left


@pytest.mark.parametrize(
    "lookup_ids",
    [
        pytest.param(10_000, id="by-value"),  # a daily run's few new orphans: IN, through the bloom filters
        pytest.param(0, id="semi-join", marks=pytest.mark.slow),  # more new orphans than LOOKUP_IDS
    ],
)
def test_an_orphan_whose_shown_came_earlier_in_another_document_never_stands(spark, tmp_path, monkeypatch, lookup_ids):
    from echo.jobs import track

    monkeypatch.setattr(track, "LOOKUP_IDS", lookup_ids)
    shown = Ev(user="p", doc="d2", t0=T0 + 3_600_000).shown("s", "x = 1")
    other = Ev(user="p", doc="d3", t0=T0 + 3_650_000).shown("t", "y = 2")
    acc = Ev(user="p", doc="d1", t0=T0 + 3_700_000).accepted("s", "x = 1")
    lone = Ev(user="p", doc="d4", t0=T0 + 3_800_000).accepted("u", "z = 3")  # shown nowhere: stands
    whole, inc = one_run_vs_batches(_batches(tmp_path, [shown, other], [acc, lone]), tmp_path)
    assert inc == whole
    rows = sorted((r[0], r[OUTCOME]) for r in whole["silver/suggestions"])
    assert rows == [("s", "ignored"), ("t", "ignored"), ("u", "orphan")]


@pytest.mark.slow  # make test-slow; the bridge and orphan cases stay in the default run
def test_an_event_arriving_after_many_later_batches_is_placed_exactly(spark, tmp_path):
    days = []
    for d in range(4):
        ev = Ev(user="l", doc=f"d{d}", t0=T0 + d * DAY + 3_600_000)
        days.append([ev.shown(f"s{d}", "x = 1"), ev.accepted(f"s{d}", "x = 1", ts=ev.t + 1_000),
                     ev.edit(0, 0, "q", ts=ev.t + 2 * GAP)])  # fmt: skip
    late = days[0].pop()  # day 0's last edit arrives after days 1..3
    whole, inc = one_run_vs_batches(_batches(tmp_path, *days, [late]), tmp_path)
    assert inc == whole
    assert len(whole["silver/sessions"]) == 8


def _files_by_partition(lake: str, table: str, column: str) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for f in pa.table(DeltaTable(os.path.join(lake, table)).get_add_actions(flatten=True)).to_pylist():
        out.setdefault(str(f[f"partition.{column}"]), set()).add(f["path"])
    return out


def test_a_batch_of_one_day_rewrites_only_that_days_partitions(spark, tmp_path):
    from tests.helpers import run_stages

    def day_events(d: int, user: str) -> list[dict]:
        ev = Ev(user=user, doc=f"d{d}", t0=T0 + d * DAY + 3_600_000)
        return [ev.shown(f"{user}{d}", "x = 1"), ev.accepted(f"{user}{d}", "x = 1", ts=ev.t + 1_000)]

    lake = str(tmp_path / "lake")
    run_stages([write_jsonl(tmp_path / "b0" / "e.jsonl", day_events(0, "a") + day_events(1, "a"))], lake)
    tables = {"silver/sessions": "start_date", "silver/suggestions": "day", "gold/acceptance_metrics": "day"}
    before = {t: _files_by_partition(lake, t, c) for t, c in tables.items()}
    run_stages([write_jsonl(tmp_path / "b1" / "e.jsonl", day_events(1, "b"))], lake)
    for t, c in tables.items():
        after = _files_by_partition(lake, t, c)
        assert after["2023-11-15"] == before[t]["2023-11-15"], t  # day 0: untouched
        assert after["2023-11-16"] != before[t]["2023-11-16"], t  # day 1: rewritten
    assert sorted(read_table(lake, "silver/sessions").user_id) == ["a", "a", "b"]


def test_a_first_sessionize_records_no_session_changes_and_a_later_one_records_its_own(spark, tmp_path):
    from tests.helpers import run_stages

    ev = Ev(user="a", t0=T0 + 3_600_000)
    first, late = ev.shown("s1", "x = 1"), ev.edit(0, 0, "#", ts=ev.t + GAP)  # the late edit extends the session
    lake = str(tmp_path / "lake")
    stages = ("ingest", "sessionize")
    run_stages([write_jsonl(tmp_path / "b0" / "e.jsonl", [first])], lake, stages=stages)
    assert read_table(lake, "_echo/session_changes").empty  # track's first run reads none
    run_stages([write_jsonl(tmp_path / "b1" / "e.jsonl", [late])], lake, stages=stages)
    changes = read_table(lake, "_echo/session_changes")
    # the stored session it removed and the one it wrote, both under run 2
    assert sorted(zip(changes.lo_ts_ms, changes.hi_ts_ms, changes.run_no, strict=True)) == [
        (first["ts_ms"], first["ts_ms"], 2), (first["ts_ms"], late["ts_ms"], 2)
    ]


def test_a_changed_session_gap_is_refused_naming_both_values(spark, tmp_path):
    import pytest

    from echo.errors import LakeError
    from echo.jobs import sessionize
    from tests.helpers import run_stages

    ev = Ev(user="g", t0=T0)
    lake = str(tmp_path / "lake")
    run_stages(_batches(tmp_path, [ev.shown("s", "x = 1")]), lake)
    before = read_table(lake, "silver/sessions")
    with pytest.raises(LakeError, match=r"with --session-gap-s 1800; this run asks for --session-gap-s 600"):
        sessionize.main(["--lake", lake, "--quiet", "--session-gap-s", "600"])
    assert read_table(lake, "silver/sessions").equals(before)


@pytest.mark.slow  # a conflicting copy in a later batch stays in the default run (test_ingest)
def test_a_conflicting_copy_on_another_day_is_found_through_the_event_index(spark, tmp_path):
    ev = Ev(user="c", t0=T0 + 3_600_000)
    first = ev.shown("s", "x = 1")
    copy = {**first, "ts_ms": first["ts_ms"] + 5 * DAY}  # same event_id, other content and day
    identical = dict(first)
    whole, inc = one_run_vs_batches(_batches(tmp_path, [first], [Ev(user="d", t0=T0 + 9 * DAY).shown("t", "y")],
                                              [copy, identical]), tmp_path)  # fmt: skip
    assert inc == whole
    assert [r[1] for r in whole["bronze/quarantine"]] == ["conflicting_duplicate"]
    assert sorted(r[0] for r in whole["bronze/events"]) == sorted([first["event_id"], "d-d1-00001"])


def _long_lived_document_days(n: int) -> list[list[dict]]:
    """One document edited every day for ``n`` days: each day a suggestion shown,
    accepted and edited after."""
    ev = Ev(user="w", doc="lib")
    days = []
    for d in range(n):
        ev.t = T0 + d * DAY + 3_600_000
        days.append([ev.shown(f"s{d}", "x = 1"), ev.accepted(f"s{d}", "x = 1", ts=ev.t + 1_000),
                     ev.edit(0, 0, "q", ts=ev.t + 2_000)])  # fmt: skip
    return days


def test_a_daily_batch_replays_a_long_lived_document_only_from_the_versions_it_can_change(spark, tmp_path):
    from tests.helpers import run_stages

    _batches(tmp_path, *_long_lived_document_days(3))  # exact against one run: test_a_daily_batch_..._equals_one_run
    # day 2's run replays the versions of day 1 (its suggestion's walk could still read
    # day 2's changes) and day 2, never day 0's
    lake = str(tmp_path / "lake")
    run_stages([tmp_path / "b0" / "e.jsonl", tmp_path / "b1" / "e.jsonl"], lake)
    day0 = _files_by_partition(lake, "silver/suggestions", "day")["2023-11-15"]
    run_stages([tmp_path / "b2" / "e.jsonl"], lake)
    assert _files_by_partition(lake, "silver/suggestions", "day")["2023-11-15"] == day0
    state = read_table(lake, "_echo/track_state")
    assert sorted(state[state.run_no == state.run_no.max()].suggestion_id) == ["s1", "s2"]


def test_compacting_track_state_keeps_each_suggestions_latest_row_as_of_every_later_run(spark, tmp_path, monkeypatch):
    from echo.jobs import track
    from echo.lake import open_lake
    from echo.lake.tables import TRACK_STATE

    lake = open_lake(spark, str(tmp_path / "lake"), "delta-rs")
    lake.check_root(create=True)
    rows = [  # doc, suggestion, user, lo, hi, reach (None: any version), run
        ("d", "a", "u", 0, 1, None, 1), ("d", "b", "u", 2, 3, 5, 1),
        ("d", "a", "u", 0, 1, 4, 2), ("e", "c", "v", 0, 0, 0, 2),  # a replayed again by run 2
        ("d", "b", "u", 2, 3, 6, 4),  # above the watermark (run 3 replayed nothing): kept as it is
    ]
    lake.append(TRACK_STATE, spark.createDataFrame(rows, TRACK_STATE.schema))

    def latest(as_of: int) -> list[tuple]:
        return sorted(tuple(r) for r in track.latest_state(lake, as_of, user=True).collect())

    before = {as_of: latest(as_of) for as_of in (3, 4)}
    monkeypatch.setattr(track, "STATE_COMPACT_RUNS", 1)
    assert track.compact_state(lake, 3) == [1, 2]
    assert {as_of: latest(as_of) for as_of in (3, 4)} == before
    stored = sorted(tuple(r) for r in lake.read(TRACK_STATE).collect())
    # into the newest compacted run's partition (run 3 has none)
    assert stored == [("d", "a", "u", 0, 1, 4, 2), ("d", "b", "u", 2, 3, 5, 2), ("d", "b", "u", 2, 3, 6, 4),
                      ("e", "c", "v", 0, 0, 0, 2)]  # fmt: skip
    assert sorted(int(p) for p in lake.files_per_partition(TRACK_STATE)) == [2, 4]
    assert track.compact_state(lake, 3) == []  # one run partition at or below the watermark: nothing to do


@pytest.mark.slow  # make test-slow; the compaction itself stays in the default run
def test_track_state_compacts_to_each_suggestions_latest_row_and_daily_batches_still_equal_one_run(
    spark, tmp_path, monkeypatch
):
    from echo.jobs import track

    monkeypatch.setattr(track, "STATE_COMPACT_RUNS", 1)  # compact whenever two runs lie below the watermark
    days = _long_lived_document_days(3)
    late = Ev(user="w", doc="lib", t0=T0 + 3_600_000 + 1_500).edit(2, 0, "#")  # day 0's version 3 comes last
    late.update(event_id="late-edit", doc_version=3)  # a version day 1 holds too: its walks are replayed
    whole, inc = one_run_vs_batches(_batches(tmp_path, *days, [late]), tmp_path)
    assert inc == whole
    lake = next(p for p in tmp_path.iterdir() if p.name.startswith("inc-"))
    state = read_table(str(lake), "_echo/track_state")
    # runs 3 and 4 each compacted the two runs below their watermark into the newer one
    assert sorted(set(state.run_no)) == [3, 4]
    compacted = state[state.run_no == 3]
    assert sorted(compacted.suggestion_id) == ["s0", "s1", "s2"]  # one row each, the latest
    ops = [h.get("echo.op") for h in DeltaTable(os.path.join(lake, "_echo/track_state")).history()]
    assert ops.count("compact") == 2


@pytest.mark.slow  # make test-slow; the contract sample in three batches stays in the default run
def test_a_daily_batch_of_a_long_lived_document_equals_one_run(spark, tmp_path):
    days = _long_lived_document_days(3)
    whole, inc = one_run_vs_batches(_batches(tmp_path, *days), tmp_path)
    assert inc == whole


@pytest.mark.slow  # make test-slow; a long-lived document's daily batches stay in the default run
def test_a_late_change_that_fills_a_lost_version_replays_the_walk_it_ends(spark, tmp_path):
    ev = Ev(user="g", t0=T0 + 3_600_000)
    early = [ev.shown("s1", "x = 1"), ev.accepted("s1", "x = 1", ts=ev.t + 1_000)]
    missing = ev.edit(2, 0, "2", ts=ev.t + 2_000)  # inside the accepted text: a refine
    later = [ev.edit(0, 0, "# ", ts=ev.t + 3_000), ev.shown("s2", "y", ts=ev.t + 4_000)]
    whole, inc = one_run_vs_batches(_batches(tmp_path, early + later, [missing]), tmp_path)
    assert inc == whole
    from tests.helpers import run_stages

    lake = str(tmp_path / "lake")
    run_stages([tmp_path / "b0" / "e.jsonl"], lake)
    assert list(read_table(lake, "silver/suggestions").set_index("suggestion_id").outcome[["s1"]]) == ["replay_gap"]
    run_stages([tmp_path / "b1" / "e.jsonl"], lake)
    assert list(read_table(lake, "silver/suggestions").set_index("suggestion_id").outcome[["s1"]]) != ["replay_gap"]


@pytest.mark.slow  # make test-slow; a long-lived document's daily batches stay in the default run
def test_a_late_event_with_the_earliest_language_relabels_the_rows_that_fell_back_on_it(spark, tmp_path):
    ev = Ev(user="n", t0=T0 + 3_600_000)
    first = [ev.shown("s1", "x = 1"), ev.accepted("s1", "x = 1", ts=ev.t + 1_000)]
    for e in first:
        e["language"] = None  # s1's language falls back on the document's first
    rest = [ev.edit(0, 0, "q", ts=ev.t + 3_600_000), ev.edit(0, 0, "r", ts=ev.t + 3_601_000)]
    rest[0]["language"] = "go"
    late = ev.edit(0, 0, "s", ts=T0)  # the earliest event, at the highest version, arrives last
    late["language"] = "rust"
    whole, inc = one_run_vs_batches(_batches(tmp_path, first + rest, [late]), tmp_path)
    assert inc == whole
    language = SUGGESTIONS.columns.index("language")
    assert [r[language] for r in whole["silver/suggestions"]] == ["rust"]
