"""Typed-instead pairs (gold/typed_pairs) and the retention weight: the pure per-pair
functions first (no Spark), then the pairs job on a lake, then the whole pipeline from
events to preference shards."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from events import Ev
from helpers import write_jsonl
from upstream import PREFIX, SUFFIX, FakeUpstream, run_pairs, suggestion

from echo.errors import ConfigError
from echo.lake.tables import TYPED_PAIRS
from echo.pairs_config import PairsConfig
from echo.stages.pairs import (
    TYPED_FILTER_REASONS,
    build_typed_pair,
    pair_weight,
    retention_fraction,
    split_of,
)

CFG = PairsConfig()
PROPOSAL = "result = subtotal * (1 + tax)"
TYPED = "result = round(subtotal * (1 + tax), 2)"


def row(**kw: Any) -> dict[str, Any]:
    r = suggestion("s1", "u1", outcome="rejected", final=None, typed=TYPED)
    r.update(kw)
    return r


# ------------------------------------------------------------------ pure: one pair


def test_typed_pair_is_typed_text_against_the_proposal() -> None:
    p = build_typed_pair(row(), CFG, 7)
    assert (p["typed_text"], p["proposal"], p["outcome"]) == (TYPED, PROPOSAL, "rejected")
    assert (p["prefix"], p["suffix"]) == (PREFIX, SUFFIX)
    assert p["drop_reason"] is None
    assert p["source_version"] == 7


def test_typed_pair_split_is_the_user_hash_split() -> None:
    for user in ("u1", "u2", "u3", "u4"):
        assert build_typed_pair(row(user_id=user), CFG, 0)["split"] == split_of(user, CFG)


def test_typed_pair_weight_is_the_typed_weight() -> None:
    assert build_typed_pair(row(), PairsConfig(typed_weight=0.25), 0)["weight"] == 0.25


def test_typed_text_equal_to_the_proposal_up_to_white_space_is_dropped() -> None:
    assert build_typed_pair(row(typed_text=" result=subtotal*(1+tax)"), CFG, 0)["drop_reason"] == "same_as_proposal"


def test_empty_typed_text_is_empty_target() -> None:
    assert build_typed_pair(row(typed_text=""), CFG, 0)["drop_reason"] == "empty_target"


def test_short_typed_text_is_too_short() -> None:
    assert build_typed_pair(row(typed_text=")"), CFG, 0)["drop_reason"] == "too_short"


def test_typed_filter_reasons_order_replaces_whitespace_rule() -> None:
    assert "same_as_proposal" in TYPED_FILTER_REASONS and "whitespace_only_change" not in TYPED_FILTER_REASONS


def test_secret_typed_instead_is_scrubbed() -> None:
    p = build_typed_pair(row(typed_text='KEY = "AKIAIOSFODNN7EXAMPLE"'), CFG, 0)
    assert "AKIAIOSFODNN7EXAMPLE" not in p["typed_text"]
    assert p["scrub_aws_access_key"] == 1


# ------------------------------------------------------------- pure: retention weight


def test_retention_weight_off_keeps_the_survival_weight() -> None:
    r = suggestion("s1", "u1")
    r["retained_5m"] = 0
    assert retention_fraction(r, "off") is None
    assert pair_weight("kept", 1.0, 0.0, CFG, retention_fraction(r, "off")) == 0.5


def test_retention_weight_uses_the_retained_share() -> None:
    r = suggestion("s1", "u1", proposal="abcdefghij")
    r["retained_5m"] = 5
    frac = retention_fraction(r, "5m")
    assert frac == 0.5
    # kept: 1.0 * (0.5 + 0.5 * 0.5); survival would have given 1.0 at 600 s
    assert pair_weight("kept", 1.0, 600.0, CFG, frac) == 0.75


def test_retention_weight_unknown_falls_back_to_survival() -> None:
    r = suggestion("s1", "u1")
    r["retained_15m"] = None
    assert retention_fraction(r, "15m") is None


def test_retention_weight_choice_is_checked() -> None:
    with pytest.raises(ConfigError, match="retention-weight"):
        PairsConfig(retention_weight="7m")


# ------------------------------------------------------------------ the pairs job


def _typed_rows(up: FakeUpstream) -> dict[str, dict[str, Any]]:
    return {r["suggestion_id"]: r.asDict() for r in up.lake.read(TYPED_PAIRS).collect()}


def test_pairs_job_writes_and_counts_typed_pairs(spark: Any, lake: str) -> None:
    up = FakeUpstream(spark, lake)
    up.batch([
        suggestion("t-rej", "u1", outcome="rejected", final=None, typed=TYPED),
        suggestion("t-ign", "u1", outcome="ignored", final=None, typed="total = subtotal + tax"),
        suggestion("t-rew", "u2", outcome="rewritten", final="x = 1 + 2", similarity=0.1, typed="x = 1 + 2"),
        suggestion("t-same", "u2", outcome="ignored", final=None, typed=PROPOSAL),
        suggestion("t-none", "u2", outcome="rejected", final=None),  # no typed text: no candidate
        suggestion("k", "u3"),  # kept: a refinement pair, not a typed one
    ])  # fmt: skip
    report = run_pairs(up)
    typed = report["typed"]
    assert (typed["candidates"], typed["pairs_written"]) == (4, 3)
    assert typed["outcomes"] == {"rejected": 1, "ignored": 1, "rewritten": 1}
    assert typed["filtered"]["same_as_proposal"] == 1
    assert sum(typed["splits"].values()) == 3
    rows = _typed_rows(up)
    assert set(rows) == {"t-rej", "t-ign", "t-rew"}
    assert rows["t-rej"]["typed_text"] == TYPED and rows["t-rej"]["proposal"] == PROPOSAL
    assert report["pairs_written"] == 1  # the refinement pairs are unchanged by all this


@pytest.mark.slow  # incremental == one run for every table, typed pairs included, stays in the default run (test_incremental)
def test_typed_pairs_are_recomputed_for_changed_rows_only(spark: Any, lake: str) -> None:
    up = FakeUpstream(spark, lake)
    up.batch([suggestion("a", "u1", outcome="rejected", final=None, typed=TYPED),
              suggestion("b", "u2", outcome="rejected", final=None, typed="y = compute(x)")])  # fmt: skip
    run_pairs(up)
    up.batch([suggestion("a", "u1", outcome="rejected", final=None, typed="z = other_thing()")])
    report = run_pairs(up)
    assert report["rows_changed"] == 1 and report["typed"]["candidates"] == 1
    incremental = {k: (v["typed_text"], v["split"]) for k, v in _typed_rows(up).items()}
    assert incremental == {"a": ("z = other_thing()", split_of("u1", CFG)), "b": ("y = compute(x)", split_of("u2", CFG))}
    run_pairs(up, PairsConfig(rebuild=True))
    assert {k: (v["typed_text"], v["split"]) for k, v in _typed_rows(up).items()} == incremental


def test_typed_pairs_flag_off_empties_the_table(spark: Any, lake: str) -> None:
    up = FakeUpstream(spark, lake)
    up.batch([suggestion("a", "u1", outcome="rejected", final=None, typed=TYPED)])
    run_pairs(up)
    assert len(_typed_rows(up)) == 1
    report = run_pairs(up, PairsConfig(typed_pairs=False))  # a settings change: rebuild
    assert report["rebuild"] and report["typed"]["enabled"] is False
    assert _typed_rows(up) == {}


# ------------------------------------------------------- events to preference shards


@pytest.mark.slow  # the whole pipeline and the shards job (~1-3 min on 2 loaded cores)
def test_pipeline_from_events_to_typed_preference_rows(spark: Any, tmp_path: Path) -> None:
    """ingest -> sessionize -> track -> pairs -> shards on real events: a rejected
    proposal, then the user types another line at its position."""
    from echo.cli import main

    t0 = 1_700_000_000_000
    ev = Ev(user="u1", t0=t0)
    events = [
        ev.edit(0, 0, "def f():\n    ", ts=t0),
        ev.shown("s1", "return None", offset=13, ts=t0 + 1_000),
        ev.rejected("s1", ts=t0 + 1_500),
        ev.edit(13, 0, "return compute(", ts=t0 + 2_000),
        ev.edit(28, 0, "x)\n", ts=t0 + 3_000),
        ev.shown("s2", "y = 1", offset=31, ts=t0 + 4_000),
        ev.accepted("s2", "y = 1", offset=31, ts=t0 + 5_000),
        ev.edit(0, 0, "# a comment far before\n", ts=t0 + 200_000),
    ]
    path = write_jsonl(tmp_path / "events.jsonl", events)
    lake, out = str(tmp_path / "lake"), str(tmp_path / "shards")
    assert main(["run", "--events", str(path), "--lake", lake, "--quiet"]) == 0
    assert main(["shards", "--lake", lake, "--out", out, "--quiet", "--dedup", "false"]) == 0

    from deltalake import DeltaTable

    silver = {r["suggestion_id"]: r for r in DeltaTable(f"{lake}/silver/suggestions").to_pyarrow_table().to_pylist()}
    assert silver["s1"]["outcome"] == "rejected"
    assert (silver["s1"]["typed_text"], silver["s1"]["typed_end"]) == ("return compute(x)", "lines")
    assert silver["s1"]["typed_end_ts_ms"] == t0 + 3_000
    # s2 accepted at t0 + 5 s, the session ends at t0 + 200 s: 30 s and 2 min known, later not
    assert [silver["s2"][f"retained_{h}"] for h in ("30s", "2m", "5m", "10m", "15m")] == [5, 5, None, None, None]
    metrics = DeltaTable(f"{lake}/gold/acceptance_metrics").to_pyarrow_table().to_pylist()
    assert [(m["retained_2m"], m["known_2m"], m["known_chars_2m"], m["known_5m"]) for m in metrics] == [(5, 1, 5, 0)]
    typed = DeltaTable(f"{lake}/gold/typed_pairs").to_pyarrow_table().to_pylist()
    assert [(t["suggestion_id"], t["typed_text"], t["proposal"]) for t in typed] == [
        ("s1", "return compute(x)", "return None")
    ]
    manifest = json.loads((Path(out) / "manifest.json").read_text())
    assert manifest["source"]["pref_rows_by_source"] == {"refined": 0, "typed": 1}
    pref = [r for f in sorted(Path(out).glob("pref/*/*.parquet")) for r in pq.read_table(f).to_pylist()]
    assert [(r["chosen"], r["rejected"], r["source"]) for r in pref] == [("return compute(x)", "return None", "typed")]
