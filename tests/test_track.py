"""CONTRACT.md section 3 through the Spark track stage (the per-rule unit tests of the
replay itself are in test_replay_rules.py): horizon by session end, orphans resolved by
a later batch, code points, settings from the command line and YAML."""

from __future__ import annotations

import pandas as pd
import pytest

from tests.events import Ev
from tests.helpers import read_table, run_stages, write_jsonl

T0 = 1_700_000_000_000
S = 1000


def outcomes(lake):
    s = read_table(lake, "silver/suggestions")
    return {r.suggestion_id: r for r in s.itertuples()}


@pytest.fixture(scope="module")
def lake_window_longer_than_gap(spark, tmp_path_factory):
    """refine window 4000 s > session gap 1800 s: the session end is the horizon."""
    d = tmp_path_factory.mktemp("track1")
    ev = Ev(user="h", t0=T0)
    events = [
        ev.shown("s1", "abc", ts=T0),
        ev.accepted("s1", "abc", ts=T0 + 1 * S),
        ev.edit(3, 0, "d", ts=T0 + 100 * S),  # after the region: applied, nothing changes
        ev.edit(1, 1, "X", ts=T0 + 200 * S),  # inside: applied -> aXc
        ev.edit(0, 3, "", ts=T0 + 2200 * S),  # new session (gap 2000 s): past the horizon
    ]
    path = write_jsonl(d / "e.jsonl", events)
    yaml_cfg = d / "cfg.yaml"
    yaml_cfg.write_text("refine_window_s: 10\nsession_gap_s: 1800\n")
    lake = str(d / "lake")
    # the command line wins over the YAML file
    run_stages([path], lake, "--config", str(yaml_cfg), "--refine-window-s", "4000")
    return lake


def test_horizon_is_the_end_of_the_accepts_session(lake_window_longer_than_gap):
    r = outcomes(lake_window_longer_than_gap)["s1"]
    assert (r.outcome, r.final_text, r.walk_end) == ("refined", "aXc", "horizon")
    assert r.horizon_ts_ms == T0 + 200 * S


def test_command_line_setting_wins_over_yaml(lake_window_longer_than_gap):
    # with the YAML's 10 s window, the edit at 200 s would not have been applied
    assert outcomes(lake_window_longer_than_gap)["s1"].changes_applied == 2


@pytest.fixture(scope="module")
def two_batches(spark, tmp_path_factory):
    d = tmp_path_factory.mktemp("track2")
    ev = Ev(user="o", t0=T0)
    shown = ev.shown("s2", "héllo 🎉 wörld", ts=T0)
    acc = ev.accepted("s2", "héllo 🎉 wörld", ts=T0 + S)
    # code points: replace "wörld" (offset 8, length 5) with "world"
    fix = ev.edit(8, 5, "world", ts=T0 + 2 * S)
    b1 = write_jsonl(d / "b1" / "e.jsonl", [acc, fix])
    b2 = write_jsonl(d / "b2" / "e.jsonl", [shown])
    lake = str(d / "lake")
    run_stages([b1], lake)
    first = outcomes(lake)["s2"]
    run_stages([b2], lake)
    return first, outcomes(lake)["s2"], lake


def test_accept_without_shown_is_an_orphan(two_batches):
    first, _, _ = two_batches
    assert first.outcome == "orphan"
    assert pd.isna(first.final_text) and first.accepted_text == "héllo 🎉 wörld"


def test_orphan_is_resolved_when_shown_arrives_in_a_later_batch(two_batches):
    _, second, _ = two_batches
    assert second.outcome == "refined"
    assert second.final_text == "héllo 🎉 world"


def test_offsets_count_code_points(two_batches):
    _, second, _ = two_batches
    # 'ö' -> 'o' is one substitution in 13 code points (the emoji is one)
    assert second.edit_similarity == pytest.approx(1 - 1 / 13)


def test_metrics_count_the_resolved_suggestion(two_batches):
    _, _, lake = two_batches
    m = read_table(lake, "gold/acceptance_metrics")
    assert (int(m.shown.sum()), int(m.accepted.sum())) == (1, 1)
    assert m.char_retention.iloc[0] == pytest.approx(12 / 13)
