"""One test per rule of CONTRACT.md section 3, through the pure per-document replay.

Plain pytest, no Spark. Every scenario is a tiny hand-built event list; expected values
are worked out by hand from the contract's rules in each test. The common setup: a
suggestion ``s1`` shown at version 0, accepted at version 1 (ts 2_000) inserting
``"hello"`` at offset 10, so the tracked region is ``[10, 15)`` and, with the default
600 s window and a long session, the horizon is ``2_000 + 600_000 = 602_000``.
"""

from __future__ import annotations

import json
import random
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import pytest

from echo.contract import EVENT_COLUMNS
from echo.stages.replay import OUTPUT_COLUMNS, ReplaySettings, replay_document
from tests.conftest import CONTRACT_SAMPLE
from tests.events import event as contract_event

DEFAULT = ReplaySettings()
SESSION_END = 10_000_000  # far past every horizon unless a test says otherwise


# --------------------------------------------------------------------------- builders


def ev(
    event_type: str, event_id: str, ts_ms: int, doc_version: int, **fields: Any
) -> dict[str, Any]:
    """One event of document ``d1`` of user ``u1`` as replay reads it: every contract
    column (unspecified ones None) and the event's session."""
    row: dict[str, Any] = dict.fromkeys(EVENT_COLUMNS)
    row.update(contract_event(event_type, event_id, ts_ms, doc_version, language="python"),
               session_id="u1/0", session_end_ts_ms=SESSION_END)  # fmt: skip
    row.update(fields)
    return row


def shown(eid: str, ts: int, v: int, sid: str = "s1", **kw: Any) -> dict[str, Any]:
    kw.setdefault("model_id", "m1")
    kw.setdefault("offset", 10)
    kw.setdefault("text", "hello world")
    kw.setdefault("prefix", "x = ")
    return ev("shown", eid, ts, v, suggestion_id=sid, **kw)


def accept(
    eid: str, ts: int, v: int, offset: int, text: str, sid: str = "s1", **kw: Any
) -> dict[str, Any]:
    return ev("accepted", eid, ts, v, suggestion_id=sid, offset=offset, accepted_text=text, **kw)


def reject(eid: str, ts: int, v: int, sid: str = "s1", **kw: Any) -> dict[str, Any]:
    return ev("rejected", eid, ts, v, suggestion_id=sid, reason="escape", **kw)


def edit(
    eid: str, ts: int, v: int, offset: int, delete_len: int, insert: str, **kw: Any
) -> dict[str, Any]:
    return ev("edit", eid, ts, v, offset=offset, delete_len=delete_len, insert_text=insert, **kw)


def base(text: str = "hello", **accept_kw: Any) -> list[dict[str, Any]]:
    """Shown at v0 (ts 1_000), accepted at v1 (ts 2_000): region ``[10, 10 + len(text))``."""
    return [shown("e-shown", 1_000, 0), accept("e-acc", 2_000, 1, 10, text, **accept_kw)]


def run(
    events: Sequence[dict[str, Any]], settings: ReplaySettings = DEFAULT
) -> dict[str, dict[str, Any]]:
    return {row["suggestion_id"]: row for row in replay_document(events, settings)}


def s1(events: Sequence[dict[str, Any]], settings: ReplaySettings = DEFAULT) -> dict[str, Any]:
    return run(events, settings)["s1"]


# --------------------------------------------------------------- region arithmetic


def test_edit_before_region_shifts_region() -> None:
    # v2 replaces 1 char at 2 with 3 chars: region shifts by +2 to [12, 17).
    # v3 replaces the char at 14 = index 2 of the region ("l") with "Y".
    row = s1([*base(), edit("e2", 3_000, 2, 2, 1, "abc"), edit("e3", 4_000, 3, 14, 1, "Y")])
    assert row["final_text"] == "heYlo"
    assert row["changes_applied"] == 2


def test_edit_after_region_changes_nothing() -> None:
    row = s1([*base(), edit("e2", 3_000, 2, 15, 3, "zz")])
    assert row["final_text"] == "hello"
    assert row["outcome"] == "kept"
    assert row["changes_applied"] == 1


def test_edit_inside_region_replaces_text() -> None:
    # p=11, d=3: "h" + "ipp" + "o"
    row = s1([*base(), edit("e2", 3_000, 2, 11, 3, "ipp")])
    assert row["final_text"] == "hippo"


def test_edit_overlapping_region_start() -> None:
    # [8, 12) replaced by "AB": T = "" + "AB" + T[2:] = "ABllo", region [8, 13).
    # v3 replaces the char at 12 = index 4 of the new region ("o") with "X".
    row = s1([*base(), edit("e2", 3_000, 2, 8, 4, "AB"), edit("e3", 4_000, 3, 12, 1, "X")])
    assert row["final_text"] == "ABllX"


def test_edit_overlapping_region_end() -> None:
    # [13, 18) replaced by "XY": T = T[:3] + "XY" + T[8:] = "helXY"
    row = s1([*base(), edit("e2", 3_000, 2, 13, 5, "XY")])
    assert row["final_text"] == "helXY"


def test_edit_spanning_whole_region() -> None:
    # [5, 25) replaced by "new": region becomes [5, 8) holding "new".
    # v3 inserts "!" at 8 (= b: after the region, nothing happens).
    row = s1([*base(), edit("e2", 3_000, 2, 5, 20, "new"), edit("e3", 4_000, 3, 8, 0, "!")])
    assert row["final_text"] == "new"


def test_insertion_exactly_at_region_start_shifts() -> None:
    # p + d = 10 <= a: before the region, shift to [12, 17); the text is unchanged.
    # v3 replaces the char at 12 (now index 0: "h") with "J": proves the shift.
    events = [*base(), edit("e2", 3_000, 2, 10, 0, "ZZ"), edit("e3", 4_000, 3, 12, 1, "J")]
    assert s1(events)["final_text"] == "Jello"


def test_insertion_exactly_at_region_start_alone_keeps_text() -> None:
    row = s1([*base(), edit("e2", 3_000, 2, 10, 0, "ZZ")])
    assert row["final_text"] == "hello"
    assert row["outcome"] == "kept"


def test_insertion_exactly_at_region_end_is_after() -> None:
    row = s1([*base(), edit("e2", 3_000, 2, 15, 0, "ZZ")])
    assert row["final_text"] == "hello"
    assert row["outcome"] == "kept"


def test_deletion_of_whole_region_is_deleted() -> None:
    row = s1([*base(), edit("e2", 3_000, 2, 10, 5, "")])
    assert row["final_text"] == ""
    assert row["outcome"] == "deleted"
    assert row["edit_similarity"] == pytest.approx(0.0)  # 1 - 5/5
    assert row["retained_chars"] == 0


# ------------------------------------------------------------------ partial accepts


def test_partial_accept_continuation_extends_region() -> None:
    # accepted at offset 15 == b: T and accepted_full both grow.
    row = s1([*base(), accept("e2", 3_000, 2, 15, " world")])
    assert row["accepted_text"] == "hello world"
    assert row["final_text"] == "hello world"
    assert row["outcome"] == "kept"
    assert row["accepted_chars"] == 11
    assert row["changes_applied"] == 1


def test_partial_accept_continuation_then_edit_in_continued_part() -> None:
    # region [10, 21) after the continuation; v3 deletes "d" at 20.
    row = s1([*base(), accept("e2", 3_000, 2, 15, " world"), edit("e3", 4_000, 3, 20, 1, "")])
    assert row["accepted_text"] == "hello world"
    assert row["final_text"] == "hello worl"
    assert row["edit_similarity"] == pytest.approx(1 - 1 / 11)


def test_later_accept_of_same_suggestion_at_other_offset_is_an_edit() -> None:
    # offset 12 != b = 15: an ordinary insertion inside the region, accepted_full unchanged.
    row = s1([*base(), accept("e2", 3_000, 2, 12, "XX")])
    assert row["accepted_text"] == "hello"
    assert row["final_text"] == "heXXllo"
    assert row["edit_similarity"] == pytest.approx(1 - 2 / 7)
    assert row["outcome"] == "refined"


def test_accept_of_other_suggestion_at_region_end_is_not_a_continuation() -> None:
    rows = run([*base(), accept("e2", 3_000, 2, 15, " world", sid="s2")])
    assert rows["s1"]["accepted_text"] == "hello"
    assert rows["s1"]["final_text"] == "hello"
    assert rows["s1"]["changes_applied"] == 1


def test_first_accept_is_lowest_doc_version_not_earliest_ts() -> None:
    # the accept at v1 has a later ts than the one at v3 (skewed clock): v1 starts the region.
    events = [
        shown("e-shown", 1_000, 0),
        accept("e-late", 5_000, 1, 10, "abc"),
        edit("e2", 4_000, 2, 0, 0, "+"),
        accept("e-early", 3_000, 3, 14, "def"),
    ]
    row = s1(events)
    assert row["accepted_ts_ms"] == 5_000
    assert row["accepted_doc_version"] == 1
    assert row["accepted_text"] == "abcdef"  # region shifted to [11, 14), 14 == b continues


# -------------------------------------------------------------------------- horizon


def test_horizon_by_refine_window() -> None:
    settings = ReplaySettings(refine_window_s=60)  # horizon = 2_000 + 60_000
    row = s1([*base(), edit("e2", 62_001, 2, 10, 5, "")], settings)
    assert row["horizon_ts_ms"] == 62_000
    assert row["walk_end"] == "horizon"
    assert row["final_text"] == "hello"
    assert row["outcome"] == "kept"
    assert row["changes_applied"] == 0


def test_horizon_by_session_end() -> None:
    events = [
        shown("e-shown", 1_000, 0),
        accept("e-acc", 2_000, 1, 10, "hello", session_end_ts_ms=5_000),
        edit("e2", 4_000, 2, 14, 1, "!"),
        edit("e3", 5_001, 3, 10, 5, ""),
    ]
    row = s1(events)
    assert row["horizon_ts_ms"] == 5_000
    assert row["walk_end"] == "horizon"
    assert row["final_text"] == "hell!"
    assert row["changes_applied"] == 1


def test_change_exactly_at_horizon_is_applied() -> None:
    row = s1([*base(), edit("e2", 602_000, 2, 14, 1, "!"), edit("e3", 602_001, 3, 10, 5, "")])
    assert row["final_text"] == "hell!"
    assert row["changes_applied"] == 1
    assert row["walk_end"] == "horizon"


def test_walk_that_runs_out_of_changes_is_exhausted() -> None:
    row = s1([*base(), edit("e2", 3_000, 2, 14, 1, "!")])
    assert row["walk_end"] == "exhausted"
    assert row["outcome"] == "refined"


def test_changes_at_or_below_accept_version_are_not_replayed() -> None:
    events = [edit("e0", 500, 0, 0, 0, "zzz"), *base(), edit("e2", 3_000, 2, 0, 0, "y")]
    row = s1(events)
    assert row["final_text"] == "hello"
    assert row["changes_applied"] == 1


# ---------------------------------------------------------------------- replay gaps


def test_lost_change_is_replay_gap() -> None:
    # v2 continues the partial accept, v3 is missing, v4 exists.
    row = s1([*base(), accept("e2", 3_000, 2, 15, " world"), edit("e4", 4_000, 4, 0, 0, "x")])
    assert row["outcome"] == "replay_gap"
    assert row["walk_end"] == "lost"
    assert row["final_text"] is None
    assert row["edit_similarity"] is None
    assert row["retained_chars"] is None
    assert row["accepted_text"] == "hello world"
    assert row["changes_applied"] == 1


def test_duplicate_version_with_different_content_is_replay_gap() -> None:
    row = s1([*base(), edit("e2a", 3_000, 2, 14, 1, "!"), edit("e2b", 3_000, 2, 14, 1, "?")])
    assert row["outcome"] == "replay_gap"
    assert row["walk_end"] == "ambiguous"
    assert row["final_text"] is None
    assert row["changes_applied"] == 0


def test_duplicate_version_with_identical_content_counts_once() -> None:
    # applied once: "heXllo" (twice would give "heXXllo")
    events = [*base(), edit("e2a", 3_000, 2, 12, 0, "X"), edit("e2b", 3_100, 2, 12, 0, "X")]
    row = s1(events)
    assert row["final_text"] == "heXllo"
    assert row["changes_applied"] == 1
    assert row["walk_end"] == "exhausted"


def test_ambiguity_is_checked_before_the_horizon() -> None:
    events = [*base(), edit("e2a", 700_000, 2, 14, 1, "!"), edit("e2b", 700_000, 2, 0, 0, "?")]
    row = s1(events)
    assert row["outcome"] == "replay_gap"
    assert row["walk_end"] == "ambiguous"


def test_lost_change_past_horizon_ends_at_horizon() -> None:
    # v2 is missing, but v3 is past the horizon: the horizon check comes first.
    row = s1([*base(), edit("e3", 700_000, 3, 10, 5, "")])
    assert row["walk_end"] == "horizon"
    assert row["outcome"] == "kept"
    assert row["final_text"] == "hello"


# ------------------------------------------------------------------------- outcomes


def test_outcome_kept() -> None:
    row = s1(base())
    assert row["outcome"] == "kept"
    assert row["final_text"] == "hello"
    assert row["edit_similarity"] == pytest.approx(1.0)
    assert row["accepted_chars"] == 5
    assert row["retained_chars"] == 5


def test_outcome_refined() -> None:
    row = s1([*base(), edit("e2", 3_000, 2, 14, 1, "!")])  # "hell!": 1 - 1/5
    assert row["outcome"] == "refined"
    assert row["edit_similarity"] == pytest.approx(0.8)
    assert row["retained_chars"] == 4


def test_outcome_rewritten() -> None:
    row = s1([*base(), edit("e2", 3_000, 2, 10, 5, "abc")])  # lev("hello", "abc") = 5
    assert row["final_text"] == "abc"
    assert row["outcome"] == "rewritten"
    assert row["edit_similarity"] == pytest.approx(0.0)


def test_outcome_deleted_with_whitespace_left() -> None:
    row = s1([*base(), edit("e2", 3_000, 2, 10, 5, " \n\t")])
    assert row["final_text"] == " \n\t"
    assert row["outcome"] == "deleted"


def test_outcome_rejected() -> None:
    row = s1([shown("e-shown", 1_000, 0), reject("e-rej", 2_000, 0)])
    assert row["outcome"] == "rejected"
    for key in ("accepted_text", "final_text", "edit_similarity", "walk_end"):
        assert row[key] is None


def test_outcome_ignored() -> None:
    row = s1([shown("e-shown", 1_000, 0), edit("e1", 2_000, 1, 0, 0, "x")])
    assert row["outcome"] == "ignored"
    for key in ("accepted_text", "final_text", "edit_similarity", "walk_end"):
        assert row[key] is None


def test_accept_wins_over_reject() -> None:
    row = s1([*base(), reject("e-rej", 1_500, 0)])
    assert row["outcome"] == "kept"


def test_outcome_orphan_from_accept() -> None:
    events = [
        reject("e-rej", 1_000, 0, sid="s9", session_id="u1/1000"),
        accept("e-acc2", 4_000, 2, 3, "late", sid="s9", session_id="u1/4000", language="go"),
        accept("e-acc1", 3_000, 1, 0, "first", sid="s9", session_id="u1/3000", language="go"),
    ]
    row = run(events)["s9"]
    assert row["outcome"] == "orphan"
    assert row["accepted_text"] == "first"
    assert row["session_id"] == "u1/3000"
    assert row["language"] == "go"
    assert (row["user_id"], row["doc_id"]) == ("u1", "d1")
    for key in (
        "model_id",
        "proposal",
        "prefix",
        "suffix",
        "shown_ts_ms",
        "final_text",
        "edit_similarity",
    ):
        assert row[key] is None


def test_outcome_orphan_from_reject() -> None:
    events = [
        reject("e-b", 2_000, 0, sid="s9", session_id="u1/2000"),
        reject("e-a", 2_000, 0, sid="s9", session_id="u1/1999"),
    ]
    row = run(events)["s9"]
    assert row["outcome"] == "orphan"
    assert row["accepted_text"] is None
    assert row["session_id"] == "u1/1999"  # ts tie broken by event_id


def test_similarity_exactly_at_threshold_is_refined() -> None:
    # "abcd" -> "abxy": lev 2 over 4 = exactly 0.5
    row = s1([*base("abcd"), edit("e2", 3_000, 2, 12, 2, "xy")])
    assert row["edit_similarity"] == 0.5
    assert row["outcome"] == "refined"


def test_similarity_just_below_threshold_is_rewritten() -> None:
    row = s1(
        [*base("abcd"), edit("e2", 3_000, 2, 12, 2, "xy")],
        ReplaySettings(min_refine_similarity=0.51),
    )
    assert row["outcome"] == "rewritten"


def test_whitespace_only_accept_deleted_is_not_deleted() -> None:
    # accepted_full.strip() == "": not deleted; not kept; 1 - 4/4 = 0 -> rewritten
    row = s1([*base("    "), edit("e2", 3_000, 2, 10, 4, "")])
    assert row["final_text"] == ""
    assert row["outcome"] == "rewritten"


# ------------------------------------------------------------------------ shown row


def test_earliest_shown_chosen_among_several() -> None:
    events = [
        shown("e-c", 1_000, 0, model_id="m-c", text="c", session_id="u1/900"),
        shown("e-b", 500, 0, model_id="m-b", text="b", offset=4, latency_ms=70),
        shown("e-a", 500, 0, model_id="m-a", text="a", offset=3, latency_ms=80, suffix=")"),
    ]
    row = s1(events)
    assert row["model_id"] == "m-a"
    assert row["proposal"] == "a"
    assert row["shown_ts_ms"] == 500
    assert row["shown_offset"] == 3
    assert row["latency_ms"] == 80
    assert row["suffix"] == ")"
    assert row["session_id"] == "u1/0"
    assert row["outcome"] == "ignored"


def test_null_shown_language_falls_back_to_document_language() -> None:
    events = [
        shown("e-shown", 1_000, 0, language=None),
        edit("e1", 500, 0, 0, 0, "x", language="rust"),
    ]
    assert s1(events)["language"] == "rust"


def test_nan_nulls_from_pandas_count_as_null() -> None:
    nan = float("nan")
    events = [
        shown("e-shown", 1_000, 0, language=nan, suffix=nan, latency_ms=nan),
        edit("e1", 500, 0, 0, 0, "x", language="rust", suggestion_id=nan),
    ]
    row = s1(events)
    assert (row["language"], row["suffix"], row["latency_ms"]) == ("rust", None, None)


def test_row_has_every_output_column() -> None:
    rows = replay_document([*base(), reject("e-r", 1_000, 0, sid="s2")], DEFAULT)
    assert [tuple(row) for row in rows] == [OUTPUT_COLUMNS, OUTPUT_COLUMNS]


# ---------------------------------------------------------------------- code points


def test_non_ascii_offsets_count_code_points() -> None:
    # T = "😀" "e" U+0301 "x" (4 code points) at [3, 7).
    # v2 inserts "🎉" (1 code point) at 0: region [4, 8).
    # v3 deletes 1 code point at 6 = index 2 of the region: the combining accent.
    text = "😀e\u0301x"
    events = [
        shown("e-shown", 1_000, 0),
        accept("e-acc", 2_000, 1, 3, text),
        edit("e2", 3_000, 2, 0, 0, "🎉"),
        edit("e3", 4_000, 3, 6, 1, ""),
    ]
    row = s1(events)
    assert row["final_text"] == "😀ex"
    assert row["accepted_chars"] == 4
    assert row["retained_chars"] == 3
    assert row["edit_similarity"] == pytest.approx(0.75)  # 1 - 1/4
    assert row["outcome"] == "refined"


# ------------------------------------------------------------------------ ordering


def test_shuffled_events_give_the_same_result() -> None:
    # hand-computed: continuation -> "hello world" [10, 21); v3 shifts by +1 to [11, 22);
    # v4 replaces "w" (at 17 = index 6) with "W" -> "hello World"; s2 shown+rejected.
    events = [
        *base(),
        accept("e2", 3_000, 2, 15, " world"),
        edit("e3", 2_500, 3, 0, 0, "#"),  # skewed clock: earlier ts, later version
        edit("e4", 4_000, 4, 17, 1, "W"),
        shown("e5", 1_200, 0, sid="s2"),
        reject("e6", 1_300, 0, sid="s2"),
    ]
    orders = [list(events), list(reversed(events))]
    rng = random.Random(7)
    for _ in range(5):
        order = list(events)
        rng.shuffle(order)
        orders.append(order)
    for order in orders:
        rows = run(order)
        assert rows["s1"]["final_text"] == "hello World"
        assert rows["s1"]["accepted_text"] == "hello world"
        assert rows["s1"]["changes_applied"] == 3
        assert rows["s1"]["edit_similarity"] == pytest.approx(1 - 1 / 11)
        assert rows["s1"]["outcome"] == "refined"
        assert rows["s2"]["outcome"] == "rejected"


# ------------------------------------------------------------------ contract sample

_COMMON = {
    "event_id": str,
    "event_type": str,
    "ts_ms": int,
    "user_id": str,
    "doc_id": str,
    "doc_version": int,
}
_OPTIONAL_COMMON = {"language": str, "client": str}
_PER_TYPE: dict[str, tuple[dict[str, type], dict[str, type]]] = {
    "shown": (
        {"suggestion_id": str, "model_id": str, "offset": int, "text": str, "prefix": str},
        {"suffix": str, "latency_ms": int},
    ),
    "accepted": ({"suggestion_id": str, "offset": int, "accepted_text": str}, {}),
    "rejected": ({"suggestion_id": str}, {"reason": str}),
    "edit": ({"offset": int, "delete_len": int, "insert_text": str}, {}),
}
_NON_NEGATIVE = ("offset", "delete_len", "doc_version", "latency_ms")
_TEXTS = ("text", "prefix", "suffix", "accepted_text", "insert_text")


def _reject_constant(name: str) -> Any:
    raise ValueError(f"not JSON: {name}")


def _parse_valid(line: bytes) -> dict[str, Any] | None:
    """The record if it passes the checks of CONTRACT 1.2, else None."""
    try:
        record = json.loads(line.decode("utf-8"), parse_constant=_reject_constant)
    except ValueError:
        return None
    if not isinstance(record, dict):
        return None
    spec = _PER_TYPE.get(record.get("event_type"))  # type: ignore[arg-type]
    required = {**_COMMON, **(spec[0] if spec else {})}
    optional = {**_OPTIONAL_COMMON, **(spec[1] if spec else {})}
    if any(record.get(k) is None for k in required):
        return None
    for key, tp in {**required, **optional}.items():
        value = record.get(key)
        if value is not None and (not isinstance(value, tp) or isinstance(value, bool)):
            return None
    if spec is None:
        return None
    if any(record.get(k) is not None and record[k] < 0 for k in _NON_NEGATIVE):
        return None
    if any(record.get(k) is not None and len(record[k].encode()) > 1_048_576 for k in _TEXTS):
        return None
    return record


def _sample_events() -> list[dict[str, Any]]:
    kept: dict[str, dict[str, Any]] = {}
    for line in (CONTRACT_SAMPLE / "events.jsonl").read_bytes().split(b"\n"):
        if not line.strip():
            continue
        record = _parse_valid(line)
        if record is not None and record["event_id"] not in kept:  # first one wins
            kept[record["event_id"]] = {**dict.fromkeys(EVENT_COLUMNS), **record}
    by_user: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for event in kept.values():
        by_user[event["user_id"]].append(event)
    for user_events in by_user.values():
        user_events.sort(key=lambda e: (e["ts_ms"], e["event_id"]))
        sessions: list[list[dict[str, Any]]] = []
        for event in user_events:
            if not sessions or event["ts_ms"] - sessions[-1][-1]["ts_ms"] > 1_800_000:
                sessions.append([])
            sessions[-1].append(event)
        for session in sessions:
            for event in session:
                event["session_id"] = f"{session[0]['user_id']}/{session[0]['ts_ms']}"
                event["session_end_ts_ms"] = session[-1]["ts_ms"]
    return list(kept.values())


@pytest.mark.skipif(not CONTRACT_SAMPLE.is_dir(), reason="contract sample not present")
def test_contract_sample_suggestions_match_expected() -> None:
    expected = json.loads((CONTRACT_SAMPLE / "expected.json").read_text("utf-8"))["suggestions"]
    by_doc: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for event in _sample_events():
        by_doc[event["doc_id"]].append(event)
    rows = {
        row["suggestion_id"]: row
        for doc_events in by_doc.values()
        for row in replay_document(doc_events, DEFAULT)
    }
    assert sorted(rows) == sorted(x["suggestion_id"] for x in expected)
    columns = (
        "outcome",
        "final_text",
        "accepted_text",
        "session_id",
        "model_id",
        "language",
        "proposal",
    )
    for want in expected:
        got = rows[want["suggestion_id"]]
        assert {k: got[k] for k in columns} == {k: want[k] for k in columns}, want["suggestion_id"]
        if want["edit_similarity"] is None:
            assert got["edit_similarity"] is None
        else:
            assert got["edit_similarity"] == pytest.approx(want["edit_similarity"])
        if want.get("walk"):
            assert (got["walk_end"], got["changes_applied"]) == (
                want["walk"]["end"],
                want["walk"]["applied"],
            )
