"""The two claims track's bounded replay rests on (docs/architecture.md, "Bounded
replay"), checked on the pure replay over many random documents (no Spark):

1. replaying only a document's events with versions >= L, given the document's first
   language, gives every suggestion whose own events all lie at versions >= L exactly
   its row of the full replay;
2. a change at a version outside a suggestion's window [lo_version, reach_version]
   (any content, any time, a conflicting copy included) leaves its row as it was.
"""

from __future__ import annotations

import random
from typing import Any

import pytest

from echo.stages.region import reach, reach_scan, version_groups
from echo.stages.replay import DEPENDENCY_COLUMNS, ReplaySettings, replay_document

T0 = 1_700_000_000_000
SETTINGS = ReplaySettings(refine_window_s=60, min_refine_similarity=0.5)


def random_document(rnd: random.Random) -> list[dict[str, Any]]:
    """One document's events: suggestions shown, accepted (partial accepts continued),
    rejected or left, edits in and around them; time jumps past the horizons, lost
    versions, conflicting copies of a version, nulls in ``language``."""
    events: list[dict[str, Any]] = []
    version, ts, n, text = 0, T0, 0, "abcdefgh"
    session_end = T0 + 3_600_000

    def add(etype: str, **kw: Any) -> dict[str, Any]:
        nonlocal n
        n += 1
        e = {"event_id": f"e{n:04d}", "event_type": etype, "ts_ms": ts, "user_id": "u", "doc_id": "d",
             "doc_version": version, "language": rnd.choice([None, None, "python", "go"]),
             "session_id": "u/s", "session_end_ts_ms": session_end, "suggestion_id": None, "model_id": None,
             "offset": None, "text": None, "prefix": None, "suffix": None, "latency_ms": None,
             "accepted_text": None, "delete_len": None, "insert_text": None, **kw}  # fmt: skip
        events.append(e)
        return e

    for k in range(rnd.randint(1, 8)):
        ts += rnd.choice([500, 5_000, 50_000, 200_000])
        sid = f"s{k}"
        offset = rnd.randint(0, len(text))
        add("shown", suggestion_id=sid, model_id="m", offset=offset, text="xyz\n", prefix="p", suffix="")
        r = rnd.random()
        if r < 0.6:
            ts += rnd.choice([100, 1_000])
            version += 1
            add("accepted", suggestion_id=sid, offset=offset, accepted_text="xy")
            text = text[:offset] + "xy" + text[offset:]
            if rnd.random() < 0.3:  # a continued partial accept
                version += 1
                add("accepted", suggestion_id=sid, offset=offset + 2, accepted_text="z")
                text = text[: offset + 2] + "z" + text[offset + 2 :]
        elif r < 0.8:
            add("rejected", suggestion_id=sid)
        for _ in range(rnd.randint(0, 5)):
            ts += rnd.choice([200, 2_000, 20_000, 90_000])
            version += rnd.choice([1, 1, 1, 1, 1, 2])  # now and then a lost version
            p = rnd.randint(0, len(text))
            d = rnd.randint(0, min(3, len(text) - p))
            s = rnd.choice(["", "q", "rr", "\n"])
            add("edit", offset=p, delete_len=d, insert_text=s)
            text = text[:p] + s + text[p + d :]
            if rnd.random() < 0.1:  # a conflicting copy of the same version
                add("edit", offset=p, delete_len=0, insert_text="!")
    return events


def first_language(events: list[dict[str, Any]]) -> str | None:
    with_language = [e for e in events if e["language"] is not None]
    return min(with_language, key=lambda e: (e["ts_ms"], e["event_id"]))["language"] if with_language else None


def rows_by_id(events: list[dict[str, Any]], **kw: Any) -> dict[str, dict[str, Any]]:
    return {r["suggestion_id"]: r for r in replay_document(events, SETTINGS, clean=False, **kw)}


DOCUMENTS = [random_document(random.Random(seed)) for seed in range(300)]


def test_dependencies_are_the_own_versions_and_where_the_walks_stop() -> None:
    bounded = 0
    for events in DOCUMENTS:
        for sid, row in rows_by_id(events, dependencies=True).items():
            own = [e["doc_version"] for e in events if e["suggestion_id"] == sid]
            assert (row["lo_version"], row["hi_version"]) == (min(own), max(own))
            assert row["reach_version"] is None or row["reach_version"] >= row["hi_version"]
            bounded += row["reach_version"] is not None
    assert bounded > 0  # the documents exercise walks that stop


def test_reach_stops_at_a_lost_version_an_ambiguous_one_or_past_the_horizon() -> None:
    def change(v: int, ts: int, text: str = "a") -> dict[str, Any]:
        return {"event_type": "edit", "doc_version": v, "ts_ms": ts, "event_id": f"e{v}{text}", "offset": 0,
                "delete_len": 0, "insert_text": text}  # fmt: skip

    groups = version_groups([change(1, 10), change(2, 20), change(4, 30)])
    assert reach(1, 100, groups) == 4  # version 3 is lost: a walk stops at 4
    assert reach(1, 15, groups) == 2  # version 2 is past the horizon
    assert reach(5, 100, groups) is None  # nothing after: a walk could read any later version
    ambiguous = version_groups([change(1, 10), change(2, 20), change(2, 21, "b"), change(3, 30)])
    assert reach(1, 100, ambiguous) == 2


@pytest.mark.parametrize("ordered", [True, False], ids=["ts-ascending", "ts-out-of-order"])
def test_reach_equals_the_version_by_version_scan_on_random_histories(ordered: bool) -> None:
    rng = random.Random(11 if ordered else 12)
    scanned = 0  # histories whose ts_ms decrease somewhere: reach scans instead of bisecting
    for _ in range(300):
        versions = sorted(rng.sample(range(12), rng.randint(0, 9)))
        changes = []
        for k, v in enumerate(versions):
            ts = 100 * k if ordered else rng.randrange(0, 1000)
            changes.append({"event_type": "edit", "doc_version": v, "ts_ms": ts, "event_id": f"e{v}",
                            "offset": 0, "delete_len": 0, "insert_text": "a"})  # fmt: skip
            if rng.random() < 0.15:  # a second change at the version: the same one or another
                other = rng.choice(["a", "b"])
                changes.append({**changes[-1], "event_id": f"f{v}", "insert_text": other, "ts_ms": ts + 1})
        groups = version_groups(changes)
        assert groups.ts_ascending or not ordered
        scanned += not groups.ts_ascending
        for start in range(-1, 14):
            for horizon in (-1, 0, 150, 450, 999, 10_000):
                assert reach(start, horizon, groups) == reach_scan(start, horizon, groups), (changes, start, horizon)
    assert (scanned == 0) == ordered


@pytest.mark.parametrize("doc", range(0, len(DOCUMENTS), 3))
def test_a_replay_from_any_version_gives_the_full_rows_of_the_suggestions_above_it(doc: int) -> None:
    events = DOCUMENTS[doc]
    full = rows_by_id(events, dependencies=True)
    language = first_language(events)
    for start in range(max(e["doc_version"] for e in events) + 2):
        part = rows_by_id([e for e in events if e["doc_version"] >= start], doc_language=language, dependencies=True)
        above = {sid for sid, row in full.items() if row["lo_version"] >= start}
        assert above <= set(part)
        for sid in above:
            assert part[sid] == full[sid], (doc, start, sid)


@pytest.mark.parametrize("doc", range(1, len(DOCUMENTS), 3))
def test_a_change_outside_a_suggestions_window_leaves_its_row(doc: int) -> None:
    events = DOCUMENTS[doc]
    full = rows_by_id(events, dependencies=True)
    rnd = random.Random(doc)
    top = max(e["doc_version"] for e in events)
    for sid, row in full.items():
        outside = [v for v in range(top + 3) if v < row["lo_version"]]
        if row["reach_version"] is not None:
            outside += [v for v in range(row["reach_version"] + 1, top + 3)]
        for v in outside:
            late = {**events[0], "event_id": f"late{v}", "event_type": "edit", "doc_version": v, "suggestion_id": None,
                    "ts_ms": T0 + rnd.choice([-1, 1, 10**7]), "offset": 0, "delete_len": 0, "insert_text": "L"}  # fmt: skip
            after = rows_by_id([*events, late], dependencies=True)[sid]
            keep = [c for c in row if c not in DEPENDENCY_COLUMNS]
            assert {c: after[c] for c in keep} == {c: row[c] for c in keep}, (doc, sid, v)
