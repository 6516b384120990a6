"""forget: a user's rows leave every table and every file on disk, and stay gone."""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
from test_pairs_helpers import BUCKETS, T0, FakeUpstream, run_pairs, suggestion

from echo.lake.tables import (
    ACCEPTANCE_METRICS,
    EVENTS,
    QUARANTINE,
    REFINEMENT_PAIRS,
    SESSIONS,
    SUGGESTIONS,
)
from echo.progress import Progress

VICTIM = "user-forget-me"


def _lake_with_two_users(spark: Any, root: str) -> FakeUpstream:
    from echo.jobs.incremental import user_bucket
    from echo.stages.track import acceptance_metrics

    up = FakeUpstream(spark, root)
    up.batch(
        [
            suggestion("v1", VICTIM, proposal="secret_sauce = 42"),
            suggestion("o1", "other", proposal="y = 2"),
        ]
    )
    now = datetime.datetime.now(datetime.timezone.utc)
    q = [
        # a conflicting duplicate of one of the victim's events, and a record naming them
        ('{"event_id": "e-v1-1", "x": 1}', "conflicting_duplicate", "e-v1-1", "h1"),
        (f'{{"user_id": "{VICTIM}", "ts_ms": "bad"}}', "wrong_type", None, "h2"),
        ('{"user_id": "other", "ts_ms": "bad"}', "wrong_type", None, "h3"),
    ]
    up.lake.append(
        QUARANTINE,
        spark.createDataFrame(
            [
                (raw, reason, "f.jsonl", now, raw.encode(), 1, eid, h, None, 1, now.date())
                for raw, reason, eid, h in q
            ],
            QUARANTINE.schema,
        ),
    )
    sessions = [(f"{u}/{T0}", u, T0, T0 + 5000, 2, 1, 5.0, 0) for u in (VICTIM, "other")]
    up.lake.append(
        SESSIONS,
        spark.createDataFrame(sessions, SESSIONS.schema).withColumn(
            "user_bucket", user_bucket("user_id", BUCKETS)
        ),
    )
    up.lake.append(ACCEPTANCE_METRICS, acceptance_metrics(up.lake.read(SUGGESTIONS)))
    run_pairs(up)
    return up


def _rows_on_disk(root: Path, needle: str) -> list[str]:
    """Every Parquet file under the lake (referenced or not) whose string columns hold
    ``needle`` somewhere."""
    hits = []
    for f in root.rglob("*.parquet"):
        t = pq.read_table(f)
        for name in t.column_names:
            if t.schema.field(name).type in ("string", "large_string") and any(
                needle in v for v in t.column(name).to_pylist() if v
            ):
                hits.append(f"{f.relative_to(root)}:{name}")
    return hits


def test_forget_removes_the_user_everywhere_and_keeps_others(spark: Any, lake: str) -> None:
    from echo.jobs.forget import execute, is_forgotten

    up = _lake_with_two_users(spark, lake)
    assert _rows_on_disk(Path(lake), VICTIM)  # the test can see the user before
    report = execute(spark, up.lake, [VICTIM], progress=Progress("forget", quiet=True))
    assert report["deleted"]["bronze/quarantine"] == 2
    assert report["deleted"]["bronze/events"] == 1
    assert report["deleted"]["gold/refinement_pairs"] == 1
    assert _rows_on_disk(Path(lake), VICTIM) == []
    assert _rows_on_disk(Path(lake), "secret_sauce") == []
    for t in (EVENTS, SESSIONS, SUGGESTIONS, REFINEMENT_PAIRS):
        assert [r[0] for r in up.lake.read(t).select("user_id").distinct().collect()] == ["other"]
    assert [r[0] for r in up.lake.read(QUARANTINE).select("record_hash").collect()] == ["h3"]
    metrics = up.lake.read(ACCEPTANCE_METRICS).collect()
    assert [(m["shown"], m["accepted"]) for m in metrics] == [(1, 1)]  # only "other" counted now
    assert is_forgotten(up.lake, VICTIM) and not is_forgotten(up.lake, "other")


def test_later_runs_do_not_bring_the_user_back(spark: Any, lake: str) -> None:
    from echo.jobs.forget import execute

    up = _lake_with_two_users(spark, lake)
    execute(spark, up.lake, [VICTIM], progress=Progress("forget", quiet=True))
    up.batch([suggestion("o2", "other", proposal="z = 3")])  # new events of another user
    run_pairs(up)
    from echo.pairs_config import PairsConfig

    run_pairs(up, PairsConfig(rebuild=True))  # a full rebuild from silver
    users = {r[0] for r in up.lake.read(REFINEMENT_PAIRS).select("user_id").collect()}
    assert users == {"other"}


def test_drop_forgotten_filters_records_ingest_would_keep(spark: Any, lake: str) -> None:
    from echo.jobs.forget import FORGOTTEN_USERS, drop_forgotten, user_hash

    up = FakeUpstream(spark, lake)
    records = spark.createDataFrame(
        [("e1", VICTIM), ("e2", "other")], "event_id string, user_id string"
    )
    assert drop_forgotten(up.lake, records).count() == 2  # nobody forgotten yet
    now = datetime.datetime.now(datetime.timezone.utc)
    up.lake.append(
        FORGOTTEN_USERS,
        spark.createDataFrame([(user_hash(VICTIM), now, None)], FORGOTTEN_USERS.schema),
    )
    assert [tuple(r) for r in drop_forgotten(up.lake, records).collect()] == [("e2", "other")]


def test_cli_forget_exits_zero(spark: Any, lake: str) -> None:
    from echo.cli import main

    up = _lake_with_two_users(spark, lake)
    assert main(["forget", "--user", VICTIM, "--lake", lake, "--quiet"]) == 0
    assert up.lake.read(EVENTS).where(f"user_id = '{VICTIM}'").count() == 0
