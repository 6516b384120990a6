"""Tables written by one Delta backend are read and appended to by the other: a lake moves
between a laptop (delta-rs) and a cluster (delta-spark) without conversion. Needs the
delta-spark classes (``ECHO_DELTA_JARS=... make test``); skipped with the reason elsewhere."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from echo.lake import open_lake
from echo.lake.tables import SESSIONS
from tests.conftest import CONTRACT_SAMPLE, skip_without_delta_spark
from tests.helpers import run_stages, write_jsonl

pytestmark = pytest.mark.delta_spark

OTHER = {"delta-rs": "delta-spark", "delta-spark": "delta-rs"}


def session(i: int) -> tuple[Any, ...]:
    return (f"u{i}/0", f"u{i}", 0, 10, 2, 1, 0.01, i % 3)


@pytest.mark.parametrize("writer", ["delta-rs", "delta-spark"])
def test_a_table_one_backend_wrote_is_read_and_appended_by_the_other(
    spark: Any, tmp_path: Path, writer: str
) -> None:
    from deltalake import DeltaTable

    skip_without_delta_spark(spark)
    root = str(tmp_path / "lake")
    first = open_lake(spark, root, writer)
    first.check_root(create=True)
    first.append(SESSIONS, spark.createDataFrame([session(i) for i in range(3)], SESSIONS.schema))
    second = open_lake(spark, root, OTHER[writer])
    second.check_root(create=False)
    assert sorted(r[0] for r in second.read(SESSIONS).select("session_id").collect()) == ["u0/0", "u1/0", "u2/0"]
    second.append(SESSIONS, spark.createDataFrame([session(i) for i in range(3, 5)], SESSIONS.schema))
    second.replace_partitions(SESSIONS, spark.createDataFrame([session(6)], SESSIONS.schema), [0])
    want = ["u1/0", "u2/0", "u4/0", "u6/0"]  # bucket 0 (u0, u3) replaced by u6
    for lake in (first, second):
        assert sorted(r[0] for r in lake.read(SESSIONS).select("session_id").collect()) == want
    assert first.version(SESSIONS) == second.version(SESSIONS) == len(first.history(SESSIONS)) - 1
    assert sorted(DeltaTable(first.path(SESSIONS)).to_pandas().session_id) == want


def test_batches_alternating_backends_give_the_tables_of_one_backend(spark: Any, tmp_path: Path) -> None:
    from tests.test_incremental import snapshot

    skip_without_delta_spark(spark)
    lines = (CONTRACT_SAMPLE / "events.jsonl").read_bytes().split(b"\n")
    batches = [write_jsonl(tmp_path / f"b{i}" / "e.jsonl", lines[i::3]) for i in range(3)]
    one = str(tmp_path / "one")
    for b in batches:
        run_stages([b], one, "--lake-backend", "delta-rs")
    mixed = str(tmp_path / "mixed")
    for b, backend in zip(batches, ["delta-spark", "delta-rs", "delta-spark"], strict=True):
        run_stages([b], mixed, "--lake-backend", backend)
    assert snapshot(mixed) == snapshot(one)
