"""One test per rule of docs/signals.md (typed instead, retention at horizons), through
the pure per-document replay. Plain pytest, no Spark, tiny hand-built event lists with
expected values worked out by hand.

Typed-instead setup: suggestion ``s1`` (proposal ``"hello world"``, one line) shown at
version 0, ts 1_000, offset 10, then not accepted; with the default 600 s window and a
long session its typed horizon is ``1_000 + 600_000 = 601_000``.
Retention setup: ``s1`` accepted at version 1, ts 2_000, ``"hello"`` at offset 10
(region ``[10, 15)``); the horizons are 32_000, 122_000, 302_000, 602_000, 902_000.
"""

from __future__ import annotations

from typing import Any

from echo.stages.replay import OUTPUT_COLUMNS
from echo.stages.retention import RETENTION_COLUMNS
from echo.stages.typed import line_cut, proposal_lines
from tests.test_replay_rules import accept, base, edit, ev, run, s1, shown

ACCEPT_TS = 2_000


def reject(eid: str, ts: int, v: int, sid: str = "s1", reason: str = "escape", **kw: Any) -> dict[str, Any]:
    return ev("rejected", eid, ts, v, suggestion_id=sid, reason=reason, **kw)


def typed_base(reason: str | None = "typed_over", text: str = "hello world") -> list[dict[str, Any]]:
    """Shown at v0 (ts 1_000, offset 10); rejected with ``reason`` at ts 1_200 (None: ignored)."""
    events = [shown("e-shown", 1_000, 0, text=text)]
    if reason is not None:
        events.append(reject("e-rej", 1_200, 0, reason=reason))
    return events


def typing(*chunks: str, at: int = 10, v: int = 1, ts: int = 2_000) -> list[dict[str, Any]]:
    """Insertions of ``chunks`` one after the other from offset ``at`` (versions ``v``..)."""
    out = []
    for i, chunk in enumerate(chunks):
        out.append(edit(f"t{v + i}", ts + 100 * i, v + i, at, 0, chunk))
        at += len(chunk)
    return out


def retained(row: dict[str, Any]) -> list[Any]:
    return [row[c] for c in RETENTION_COLUMNS]


# ------------------------------------------------------------------- typed: the region


def test_new_columns_are_replay_output() -> None:
    assert {"typed_text", "typed_end_ts_ms", "typed_end", *RETENTION_COLUMNS} <= set(OUTPUT_COLUMNS)


def test_typed_text_is_what_was_typed_at_the_shown_offset() -> None:
    row = s1([*typed_base(), *typing("hel", "p(x)")])
    assert row["outcome"] == "rejected"
    assert row["typed_text"] == "help(x)"
    assert row["typed_end"] == "exhausted"
    assert row["typed_end_ts_ms"] == 2_100


def test_typed_text_starts_after_the_shown_version() -> None:
    # shown at v3: the changes up to v3 are history, not typing (v2 at the offset too)
    events = [edit("e1", 500, 1, 0, 0, "abc"), edit("e2", 600, 2, 13, 0, "zz"), edit("e3", 700, 3, 13, 0, "y"),
              shown("e-shown", 1_000, 3, offset=13), reject("e-rej", 1_200, 3), *typing("ok", at=13, v=4)]  # fmt: skip
    assert s1(events)["typed_text"] == "ok"


def test_typed_text_ends_at_the_line_break_of_a_one_line_proposal() -> None:
    row = s1([*typed_base(), *typing("foo()", "\nbar")])
    assert row["typed_text"] == "foo()"
    assert row["typed_end"] == "lines"
    assert row["typed_end_ts_ms"] == 2_100  # the change that completed the line


def test_typing_after_the_line_is_complete_is_not_included() -> None:
    row = s1([*typed_base(), *typing("foo()\n", "more", "\nstill more")])
    assert row["typed_text"] == "foo()"
    assert row["typed_end_ts_ms"] == 2_000


def test_typed_text_of_a_multi_line_proposal_covers_as_many_lines() -> None:
    # "a\nb": one line break, no trailing one -> cut before the second line break
    row = s1([*typed_base(text="a\nb"), *typing("x\ny", "\nz")])
    assert row["typed_text"] == "x\ny"
    assert row["typed_end"] == "lines"


def test_typed_text_of_a_proposal_ending_in_a_line_break_keeps_it() -> None:
    row = s1([*typed_base(text="a\n"), *typing("xy\nz")])
    assert row["typed_text"] == "xy\n"


def test_line_break_typed_first_gives_an_empty_typed_line() -> None:
    row = s1([*typed_base(), *typing("\nnext line")])
    assert row["typed_text"] == ""
    assert row["typed_end"] == "lines"


def test_line_cut_counts() -> None:
    assert proposal_lines("a\nb\n") == (2, True)
    assert line_cut("1\n2\n3", 2, True) == 4
    assert line_cut("1\n2", 2, True) is None
    assert line_cut("12", 0, False) is None
    assert line_cut("12\n", 0, False) == 2


def test_backspace_inside_the_typed_text_edits_it() -> None:
    # "hex" at [10, 13); backspace over "x" (p=12, d=1), then "llo" at the caret 12
    events = [*typed_base(), *typing("hex"), edit("b", 2_100, 2, 12, 1, ""), *typing("llo", at=12, v=3, ts=2_200)]
    row = s1(events)
    assert row["typed_text"] == "hello"
    assert row["typed_end_ts_ms"] == 2_200


def test_deleting_before_the_caret_then_typing_counts_from_the_new_caret() -> None:
    # three backspaces before the empty region (p=7, d=3 <= a): shift to 7, then "bar" at 7
    events = [*typed_base(), edit("b", 1_500, 1, 7, 3, ""), *typing("bar", at=7, v=2)]
    assert s1(events)["typed_text"] == "bar"


def test_replacing_a_selection_around_the_caret_is_typed() -> None:
    # [8, 13) replaced by "xyz": overlaps the empty region at 10 -> T = "xyz", region [8, 11)
    events = [*typed_base(), edit("sel", 1_500, 1, 8, 5, "xyz"), *typing("!", at=11, v=2)]
    assert s1(events)["typed_text"] == "xyz!"


def test_edit_before_the_region_is_unrelated_and_shifts_it() -> None:
    # "ab" typed at 10; a line added at 0 (before) shifts the region to [14, 16); typing at 16 goes on
    events = [*typed_base(), *typing("ab"), edit("far", 2_500, 2, 0, 0, "# c\n"), *typing("cd", at=16, v=3, ts=3_000)]
    assert s1(events)["typed_text"] == "abcd"


def test_edit_after_the_region_is_unrelated() -> None:
    events = [*typed_base(), *typing("ab"), edit("far", 2_500, 2, 40, 3, "zzz")]
    row = s1(events)
    assert row["typed_text"] == "ab"
    assert row["typed_end_ts_ms"] == 2_000


def test_typing_before_the_typed_text_is_not_included() -> None:
    # an insertion at a (p + d <= a, the region not empty) shifts, as the contract's rule
    events = [*typed_base(), *typing("ab"), edit("pre", 2_500, 2, 10, 0, "Q")]
    assert s1(events)["typed_text"] == "ab"


def test_nothing_typed_at_the_position_is_empty() -> None:
    row = s1([*typed_base(reason="escape"), edit("far", 2_500, 1, 40, 0, "zzz")])
    assert row["typed_text"] == ""
    assert row["typed_end_ts_ms"] is None
    assert row["typed_end"] == "exhausted"


def test_accept_of_another_suggestion_at_the_caret_is_part_of_the_typed_text() -> None:
    events = [*typed_base(), *typing("pri"), shown("e-s2", 2_050, 1, sid="s2", offset=13),
              accept("e-a2", 2_100, 2, 13, "nt(x)", sid="s2")]  # fmt: skip
    rows = run(events)
    assert rows["s1"]["typed_text"] == "print(x)"
    assert rows["s2"]["outcome"] == "kept"


# ------------------------------------------------------------- typed: reasons, outcomes


def test_typed_over_and_escape_follow_the_same_rule() -> None:
    changes = typing("foo", "()")
    over = s1([*typed_base("typed_over"), *changes])
    escape = s1([*typed_base("escape"), *changes])
    assert over["typed_text"] == escape["typed_text"] == "foo()"


def test_typing_before_the_rejected_event_counts() -> None:
    # typed_over: the keystroke that dismissed the proposal precedes the rejected event
    events = [shown("e-shown", 1_000, 0), edit("k", 1_100, 1, 10, 0, "f"), reject("e-rej", 1_150, 1, reason="typed_over"),
              *typing("oo", at=11, v=2)]  # fmt: skip
    assert s1(events)["typed_text"] == "foo"


def test_ignored_suggestion_gets_typed_text() -> None:
    row = s1([*typed_base(reason=None), *typing("abc")])
    assert row["outcome"] == "ignored"
    assert row["typed_text"] == "abc"


def test_rewritten_typed_text_is_the_final_text() -> None:
    # "hello" accepted, then replaced whole by "xyzzy" at ts 3_000: similarity 0 -> rewritten
    row = s1([*base(), edit("e2", 3_000, 2, 10, 5, "xyzzy"), edit("e3", 4_000, 3, 40, 0, "far")])
    assert row["outcome"] == "rewritten"
    assert row["typed_text"] == "xyzzy"
    assert row["typed_end"] == "final"
    assert row["typed_end_ts_ms"] == 3_000


def test_kept_and_refined_have_no_typed_text() -> None:
    kept = s1(base())
    refined = s1([*base(), edit("e2", 3_000, 2, 14, 1, "O")])
    assert (kept["outcome"], refined["outcome"]) == ("kept", "refined")
    assert kept["typed_text"] is refined["typed_text"] is None
    assert kept["typed_end"] is refined["typed_end"] is None


def test_orphan_has_no_typed_text() -> None:
    row = s1([reject("e-rej", 1_200, 0), *typing("abc")])
    assert row["outcome"] == "orphan"
    assert row["typed_text"] is None


# ---------------------------------------------------------------- typed: horizon, gaps


def test_typed_horizon_is_the_refine_window_from_the_shown_ts() -> None:
    # 601_000 is still in (a change exactly at the horizon is applied), 601_001 is not
    events = [*typed_base(), edit("in", 601_000, 1, 10, 0, "ab"), edit("out", 601_001, 2, 12, 0, "cd")]
    row = s1(events)
    assert row["typed_text"] == "ab"
    assert row["typed_end"] == "horizon"


def test_typed_horizon_is_capped_at_the_shown_session_end() -> None:
    events = [shown("e-shown", 1_000, 0, session_end_ts_ms=2_050), *typing("ab", "cd")]
    row = s1(events)
    assert row["typed_text"] == "ab"
    assert row["typed_end"] == "horizon"


def test_lost_version_makes_typed_text_unknown() -> None:
    events = [*typed_base(), edit("t1", 2_000, 1, 10, 0, "ab"), edit("t3", 2_100, 3, 12, 0, "cd")]
    row = s1(events)
    assert row["typed_text"] is None
    assert row["typed_end"] == "gap"


def test_ambiguous_version_makes_typed_text_unknown() -> None:
    events = [*typed_base(), edit("x", 2_000, 1, 10, 0, "ab"), edit("y", 2_000, 1, 10, 0, "ac")]
    assert s1(events)["typed_end"] == "gap"


def test_gap_after_the_line_is_complete_does_not_matter() -> None:
    events = [*typed_base(), *typing("foo\n"), edit("t3", 2_500, 3, 0, 0, "x")]
    row = s1(events)
    assert (row["typed_text"], row["typed_end"]) == ("foo", "lines")


# ------------------------------------------------------------------------- retention


def test_kept_text_is_retained_at_every_horizon() -> None:
    assert retained(s1(base())) == [5, 5, 5, 5, 5]


def test_edit_between_horizons_counts_from_the_next_one() -> None:
    # at ts 62_000 (after 30 s, before 2 min) "ll" is deleted: LCS("hello", "heo") = 3
    row = s1([*base(), edit("e2", ACCEPT_TS + 60_000, 2, 12, 2, "")])
    assert retained(row) == [5, 3, 3, 3, 3]


def test_change_exactly_at_a_horizon_is_applied() -> None:
    row = s1([*base(), edit("e2", ACCEPT_TS + 30_000, 2, 10, 5, "")])
    assert retained(row) == [0, 0, 0, 0, 0]


def test_horizon_past_the_session_end_is_unknown() -> None:
    events = [shown("e-shown", 1_000, 0), accept("e-acc", ACCEPT_TS, 1, 10, "hello", session_end_ts_ms=ACCEPT_TS + 200_000)]
    assert retained(s1(events)) == [5, 5, None, None, None]


def test_horizons_go_past_the_refine_window() -> None:
    # a deletion at 702_000 is past the contract's horizon (602_000) but before 15 min
    row = s1([*base(), edit("e2", ACCEPT_TS + 700_000, 2, 10, 5, "")])
    assert row["outcome"] == "kept"
    assert retained(row) == [5, 5, 5, 5, 0]


def test_lost_version_makes_later_horizons_unknown() -> None:
    # v3 missing; v4 at 102_000: the 30 s walk ended before it, the others meet the gap
    row = s1([*base(), edit("e2", 10_000, 2, 12, 1, "L"), edit("e4", ACCEPT_TS + 100_000, 4, 0, 0, "x")])
    assert retained(row) == [4, None, None, None, None]


def test_ambiguous_version_makes_later_horizons_unknown() -> None:
    events = [*base(), edit("x", ACCEPT_TS + 60_000, 2, 0, 0, "a"), edit("y", ACCEPT_TS + 60_000, 2, 0, 0, "b")]
    assert retained(s1(events)) == [None, None, None, None, None]


def test_horizon_walk_ends_at_the_first_change_past_it_in_version_order() -> None:
    # v2 at 40_000 (past 30 s) ends the 30 s walk; v3 at a skewed 20_000 is not applied there
    events = [*base(), edit("e2", 40_000, 2, 40, 0, "far"), edit("e3", 20_000, 3, 10, 5, "")]
    assert retained(s1(events)) == [5, 0, 0, 0, 0]


def test_continued_partial_accept_counts_from_when_it_happened() -> None:
    # " world" accepted at 62_000: at 30 s only "hello" of "hello world" is there
    row = s1([*base(), accept("e2", ACCEPT_TS + 60_000, 2, 15, " world")])
    assert row["accepted_text"] == "hello world"
    assert retained(row) == [5, 11, 11, 11, 11]


def test_not_accepted_suggestions_have_no_retention() -> None:
    assert retained(s1(typed_base())) == [None] * 5


def test_rewritten_has_retention_too() -> None:
    row = s1([*base(), edit("e2", ACCEPT_TS + 200_000, 2, 10, 5, "xyzzy")])
    assert row["outcome"] == "rewritten"
    assert retained(row) == [5, 5, 0, 0, 0]


def test_event_builder_default_session_is_long() -> None:
    # the setups above rely on the builders' session end lying past every horizon
    assert ev("edit", "x", 0, 0)["session_end_ts_ms"] > ACCEPT_TS + 900_000
