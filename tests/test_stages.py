"""The pure stages on tiny inline DataFrames with explicit schemas (chispa's style): one
behaviour per test, no files, no lake."""

from __future__ import annotations

from typing import Any

from pyspark.sql import functions as F

from echo.lake.tables import EVENT_FIELDS, SUGGESTIONS
from echo.stages.replay import ReplaySettings
from echo.stages.sessionize import assign_sessions, changed_ranges, sessionize
from echo.stages.track import acceptance_metrics, narrow, track
from echo.stages.typed import SHAPE_KEYS, proposal_lines
from tests.events import Ev

T0 = 1_700_000_000_000
GAP_S = 60


def events_df(spark: Any, events: list[dict[str, Any]]) -> Any:
    rows = [tuple(e.get(f.name) for f in EVENT_FIELDS.fields) for e in events]
    return spark.createDataFrame(rows, EVENT_FIELDS)


def sessions_of(spark: Any, events: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    df = sessionize(events_df(spark, events), gap_s=GAP_S, buckets=4)
    return sorted(tuple(r) for r in df.select("session_id", "start_ts_ms", "end_ts_ms", "n_events", "n_docs").collect())


def test_a_gap_longer_than_session_gap_starts_a_new_session(spark):
    ev = Ev()
    rows = sessions_of(spark, [ev.edit(0, 0, "a", ts=T0), ev.edit(1, 0, "b", ts=T0 + GAP_S * 1000 + 1)])
    assert [r[0] for r in rows] == [f"u1/{T0}", f"u1/{T0 + GAP_S * 1000 + 1}"]


def test_a_gap_of_exactly_session_gap_stays_in_the_session(spark):
    ev = Ev()
    rows = sessions_of(spark, [ev.edit(0, 0, "a", ts=T0), ev.edit(1, 0, "b", ts=T0 + GAP_S * 1000)])
    assert rows == [(f"u1/{T0}", T0, T0 + GAP_S * 1000, 2, 1)]


def test_a_session_spans_every_document_of_its_user(spark):
    a, b = Ev(doc="a"), Ev(doc="b")
    rows = sessions_of(spark, [a.edit(0, 0, "x", ts=T0), b.edit(0, 0, "y", ts=T0 + 1000)])
    assert rows == [(f"u1/{T0}", T0, T0 + 1000, 2, 2)]


def test_users_are_sessionized_apart(spark):
    rows = sessions_of(spark, [Ev(user="u1").edit(0, 0, "x", ts=T0), Ev(user="u2").edit(0, 0, "y", ts=T0 + 1)])
    assert [r[0] for r in rows] == [f"u1/{T0}", f"u2/{T0 + 1}"]


def test_ties_on_ts_are_ordered_by_event_id_within_one_session(spark):
    ev = Ev()
    df = assign_sessions(events_df(spark, [ev.edit(0, 0, "x", ts=T0), ev.edit(1, 0, "y", ts=T0)]), gap_s=GAP_S)
    assert {r["session_id"] for r in df.collect()} == {f"u1/{T0}"}


def test_each_event_carries_its_sessions_end(spark):
    ev = Ev()
    df = assign_sessions(events_df(spark, [ev.edit(0, 0, "x", ts=T0), ev.edit(1, 0, "y", ts=T0 + 5000)]), gap_s=GAP_S)
    assert {r["session_end_ts_ms"] for r in df.collect()} == {T0 + 5000}


def outcomes(spark: Any, events: list[dict[str, Any]], **settings: Any) -> dict[str, tuple[Any, ...]]:
    df = track(assign_sessions(events_df(spark, events), gap_s=1800), settings=ReplaySettings(**settings), buckets=4)
    assert df.columns == SUGGESTIONS.columns
    return {r["suggestion_id"]: (r["outcome"], r["final_text"]) for r in df.collect()}


SESSION_ROWS = "user_id string, session_id string, start_ts_ms long, end_ts_ms long"


def test_changed_ranges_are_the_sessions_removed_or_added_not_those_that_came_back_the_same(spark):
    old = spark.createDataFrame([("u", "u/1", 1, 5), ("u", "u/10", 10, 12), ("u", "u/20", 20, 30)], SESSION_ROWS)
    touched = old.where(F.col("session_id") != "u/20").select("session_id", "start_ts_ms")
    # u/1 came back the same (a late event inside it); u/10 grew: its end moved
    new = spark.createDataFrame([("u", "u/1", 1, 5), ("u", "u/10", 10, 15)], SESSION_ROWS)
    got = sorted(tuple(r) for r in changed_ranges(old, touched, new).collect())
    assert got == [("u", 10, 12), ("u", 10, 15)]


def test_an_untouched_accept_is_kept(spark):
    ev = Ev()
    got = outcomes(spark, [ev.shown("s1", "x = 1", ts=T0), ev.accepted("s1", "x = 1", ts=T0 + 1000)])
    assert got == {"s1": ("kept", "x = 1")}


def test_an_edit_inside_the_region_refines_the_accept(spark):
    ev = Ev()
    got = outcomes(spark, [ev.shown("s1", "x = 1", ts=T0), ev.accepted("s1", "x = 1", ts=T0 + 1000),
                           ev.edit(4, 1, "2", ts=T0 + 2000)])  # fmt: skip
    assert got == {"s1": ("refined", "x = 2")}


def test_an_edit_past_the_refine_window_is_not_applied(spark):
    ev = Ev()
    got = outcomes(spark, [ev.shown("s1", "x = 1", ts=T0), ev.accepted("s1", "x = 1", ts=T0 + 1000),
                           ev.edit(4, 1, "2", ts=T0 + 1000 + 11_000)], refine_window_s=10)  # fmt: skip
    assert got == {"s1": ("kept", "x = 1")}


def test_a_shown_suggestion_without_accept_or_reject_is_ignored(spark):
    assert outcomes(spark, [Ev().shown("s1", "x", ts=T0)]) == {"s1": ("ignored", None)}


def test_an_accept_without_a_shown_is_an_orphan(spark):
    assert outcomes(spark, [Ev().accepted("s1", "x", ts=T0)])["s1"][0] == "orphan"


def test_the_proposals_shape_is_computed_in_spark_as_in_python(spark):
    texts = [None, "", "x", "x\n", "\n\ny", "é\n\n", "a\r\nb\r\n", "😀\n😀"]
    ev = Ev()
    events = [ev.shown(f"s{i}", "") for i in range(len(texts))]
    for shown, text in zip(events, texts, strict=True):
        shown["text"] = text
    got = narrow(events_df(spark, events)).select("suggestion_id", *SHAPE_KEYS).collect()
    assert {r[0]: (r[1], r[2]) for r in got} == {f"s{i}": proposal_lines(t) for i, t in enumerate(texts)}


def test_a_row_takes_proposal_prefix_and_suffix_from_its_earliest_shown_event(spark):
    ev = Ev()
    later = ev.shown("s1", "y = 2\n", ts=T0 + 500)
    earlier = ev.shown("s1", "x = 1", ts=T0)
    earlier.update(prefix="p-early", suffix="s-early")
    events = [later, earlier, ev.accepted("s1", "x = 1", ts=T0 + 1000)]
    df = track(assign_sessions(events_df(spark, events), gap_s=1800), settings=ReplaySettings(), buckets=4)
    assert [tuple(r) for r in df.select("proposal", "prefix", "suffix", "shown_ts_ms").collect()] == [
        ("x = 1", "p-early", "s-early", T0)
    ]


def test_acceptance_metrics_count_accepted_outcomes_per_model_and_day(spark):
    ev = Ev()
    events = [ev.shown("s1", "a", ts=T0), ev.accepted("s1", "a", ts=T0 + 1), ev.shown("s2", "b", ts=T0 + 2),
              ev.rejected("s2", ts=T0 + 3), ev.shown("s3", "c", ts=T0 + 4)]  # fmt: skip
    sugg = track(assign_sessions(events_df(spark, events), gap_s=1800), settings=ReplaySettings(), buckets=4)
    m = acceptance_metrics(sugg).select("model_id", "shown", "accepted", "kept", F.round("acceptance_rate", 4)).collect()
    assert [tuple(r) for r in m] == [("m1", 3, 1, 1, round(1 / 3, 4))]


KEYS = "path_idx int, pos long, event_id string, content_hash string, q_reason string, user_id string, ts_ms long"


def _classified(spark, rows: list[tuple[Any, ...]]) -> dict[int, tuple[str, str | None]]:
    from echo.stages.ingest import classify

    records = spark.createDataFrame(rows, KEYS)
    known = spark.createDataFrame([], "event_id string, content_hash string")
    quarantined = spark.createDataFrame([], "record_hash string")
    out = classify(records, known, quarantined).select("pos", "status", "final_reason").collect()
    return {r.pos: (r.status, r.final_reason) for r in out}


def test_the_first_copy_of_an_event_by_position_is_kept_whatever_its_content_sorts_as(spark):
    """The first line read wins, not the smallest content hash; each other content is
    quarantined once, and every later copy of a content is a duplicate (CONTRACT.md 1.2)."""
    rows = [(0, 1, "e", "zz", None, "u", 1), (0, 2, "e", "aa", None, "u", 1),
            (0, 3, "e", "zz", None, "u", 1), (0, 4, "e", "aa", None, "u", 1), (0, 5, "e", "mm", None, "u", 1)]  # fmt: skip
    assert _classified(spark, rows) == {
        1: ("kept", None),
        2: ("quarantined", "conflicting_duplicate"),
        3: ("duplicate", None),
        4: ("duplicate", None),
        5: ("quarantined", "conflicting_duplicate"),
    }
