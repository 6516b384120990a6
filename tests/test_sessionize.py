"""CONTRACT.md section 2 on Spark: session boundaries."""

from __future__ import annotations

import pytest

from tests.events import Ev
from tests.helpers import read_table, run_stages, write_jsonl

T0 = 1_700_000_000_000


@pytest.fixture(scope="module")
def sessions(spark, tmp_path_factory):
    d = tmp_path_factory.mktemp("sess")
    a = Ev(user="exact", t0=T0)
    exact = [a.edit(0, 0, "a", ts=T0), a.edit(1, 0, "b", ts=T0 + 1_800_000)]  # gap of exactly 1800 s
    b = Ev(user="over", t0=T0)
    over = [b.edit(0, 0, "a", ts=T0), b.edit(1, 0, "b", ts=T0 + 1_800_001)]  # 1 ms more: split
    c = Ev(user="multi", t0=T0)
    c2 = Ev(user="multi", doc="d2", t0=T0)
    multi = [c.edit(0, 0, "a", ts=T0 + 5), c2.edit(0, 0, "b", ts=T0 + 10), c.edit(1, 0, "c", ts=T0 + 7_200_000)]
    d_ = Ev(user="order", t0=T0)
    late = [d_.edit(0, 0, "x", ts=T0 + 3_000_000), d_.edit(1, 0, "y", ts=T0)]  # out of order in the file
    path = write_jsonl(d / "e.jsonl", [*exact, *over, *multi, *late])
    lake = str(d / "lake")
    run_stages([path], lake, stages=("ingest", "sessionize"))
    return read_table(lake, "silver/sessions")


def by_user(s, user):
    return s[s.user_id == user].sort_values("start_ts_ms").reset_index(drop=True)


def test_gap_of_exactly_session_gap_keeps_one_session(sessions):
    s = by_user(sessions, "exact")
    assert len(s) == 1 and s.loc[0, "n_events"] == 2


def test_gap_strictly_greater_splits_sessions(sessions):
    s = by_user(sessions, "over")
    assert list(s.n_events) == [1, 1]


def test_session_id_is_user_and_start(sessions):
    s = by_user(sessions, "over")
    assert list(s.session_id) == [f"over/{T0}", f"over/{T0 + 1_800_001}"]


def test_sessions_span_documents_of_the_user(sessions):
    s = by_user(sessions, "multi")
    assert list(s.n_events) == [2, 1] and list(s.n_docs) == [2, 1]


def test_sessions_order_by_ts_not_file_order(sessions):
    s = by_user(sessions, "order")
    assert list(s.start_ts_ms) == [T0, T0 + 3_000_000]
    assert list(s.end_ts_ms) == [T0, T0 + 3_000_000]
