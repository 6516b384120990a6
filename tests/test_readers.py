"""Every table Echo writes opens in DuckDB (delta extension from the
``duckdb-extension-delta`` package, nothing downloaded), Polars (``read_delta``) and
Spark, with the same values as delta-rs reads and as the contract sample expects."""

from __future__ import annotations

import datetime as dt
import glob
import json
import math
import os
from typing import Any

import pytest

from echo.lake.tables import ALL_TABLES, Table
from tests.conftest import CONTRACT_SAMPLE
from tests.helpers import read_table

duckdb = pytest.importorskip("duckdb")
polars = pytest.importorskip("polars")
ext = pytest.importorskip("duckdb_extension_delta")

pytestmark = pytest.mark.skipif(not CONTRACT_SAMPLE.is_dir(), reason="../shared/examples/contract-sample is absent")


def delta_extension() -> str:
    """The extension file the package ships for this DuckDB version."""
    (path,) = glob.glob(os.path.join(ext.__path__[0], "extensions", f"v{duckdb.__version__}", "delta.duckdb_extension"))
    return path


@pytest.fixture(scope="module")
def lake(spark: Any, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The contract sample through ``run`` in two batches (a second run records the state
    tables a first one does not, such as the session changes), then one user forgotten:
    every table has rows."""
    from echo.jobs import forget, run

    tmp = tmp_path_factory.mktemp("readers")
    root = str(tmp / "lake")
    lines = (CONTRACT_SAMPLE / "events.jsonl").read_bytes().splitlines(keepends=True)
    for i, part in enumerate((lines[: len(lines) // 2], lines[len(lines) // 2 :])):
        batch = tmp / f"batch-{i}.jsonl"
        batch.write_bytes(b"".join(part))
        assert run.main(["--events", str(batch), "--lake", root, "--quiet"]) == 0
    users = read_table(root, "bronze/events")["user_id"].drop_duplicates().sort_values()
    assert forget.main(["--user", users.iloc[-1], "--lake", root, "--quiet"]) == 0
    return root


def _value(v: Any) -> Any:
    if isinstance(v, float) and math.isnan(v):
        return None
    if isinstance(v, dt.datetime):
        if v.tzinfo is not None:
            v = v.astimezone(dt.timezone.utc).replace(tzinfo=None)
        return v.isoformat()
    if isinstance(v, dt.date):
        return v.isoformat()
    if isinstance(v, float):
        return round(v, 12)
    if isinstance(v, (bytes, bytearray, memoryview)):
        return bytes(v).hex()
    return v


def rows(columns: list[str], records: list[tuple[Any, ...]], table: Table) -> list[tuple[Any, ...]]:
    """The table's rows as plain Python values (each engine's own, no pandas in between),
    in the table's column order, sorted."""
    assert sorted(columns) == sorted(table.columns), (table.name, sorted(columns))
    order = [columns.index(c) for c in table.columns]
    return sorted((tuple(_value(rec[i]) for i in order) for rec in records), key=repr)


def delta_rs_rows(lake: str, table: Table) -> list[tuple[Any, ...]]:
    from deltalake import DeltaTable

    t = DeltaTable(f"{lake}/{table.name}").to_pyarrow_table()
    return rows(t.column_names, [tuple(r.values()) for r in t.to_pylist()], table)


def duckdb_rows(lake: str, table: Table) -> list[tuple[Any, ...]]:
    con = duckdb.connect()
    con.load_extension(delta_extension())
    rel = con.sql(f"SELECT * FROM delta_scan('{lake}/{table.name}')")
    return rows(list(rel.columns), rel.fetchall(), table)


def polars_rows(lake: str, table: Table) -> list[tuple[Any, ...]]:
    df = polars.read_delta(f"{lake}/{table.name}")
    return rows(df.columns, df.rows(), table)


def spark_rows(spark: Any, lake: str, table: Table) -> list[tuple[Any, ...]]:
    from echo.lake import open_lake

    df = open_lake(spark, lake).read(table)
    return rows(df.columns, [tuple(r) for r in df.collect()], table)


#: the tables the fixture's pipeline writes; the graph and forecast stages' tables (issue
#: 13, a torch model per run) are read back in tests/test_graph_stage.py instead
PIPELINE_TABLES = [t for t in ALL_TABLES if not t.name.startswith(("gold/suggestion_", "gold/outcome_"))]


@pytest.mark.parametrize("table", PIPELINE_TABLES, ids=[t.name for t in PIPELINE_TABLES])
def test_duckdb_polars_and_spark_read_the_same_values_as_delta_rs(spark: Any, lake: str, table: Table) -> None:
    reference = delta_rs_rows(lake, table)
    assert reference, f"{table.name} is empty: the comparison would prove nothing"
    assert duckdb_rows(lake, table) == reference
    assert polars_rows(lake, table) == reference
    assert spark_rows(spark, lake, table) == reference


def test_duckdb_reads_the_contract_outcomes(lake: str) -> None:
    """The values the pipeline must derive (expected.json), read back through DuckDB."""
    expected = json.loads((CONTRACT_SAMPLE / "expected.json").read_text())
    con = duckdb.connect()
    con.load_extension(delta_extension())
    kept_users = {r[0] for r in con.sql(f"SELECT DISTINCT user_id FROM delta_scan('{lake}/bronze/events')").fetchall()}
    got = dict(con.sql(f"SELECT suggestion_id, outcome FROM delta_scan('{lake}/silver/suggestions')").fetchall())
    want = {s["suggestion_id"]: s["outcome"] for s in expected["suggestions"] if s["user_id"] in kept_users}
    assert got == want and len(got) > 10


def test_polars_reads_the_contract_acceptance_metrics(lake: str) -> None:
    """gold/acceptance_metrics through Polars equals the contract's metrics of the users
    still in the lake (recomputed from expected.json's suggestions, section 5)."""
    expected = json.loads((CONTRACT_SAMPLE / "expected.json").read_text())
    kept_users = set(polars.read_delta(f"{lake}/bronze/events")["user_id"].to_list())
    want: dict[tuple[str, str, str], list[int]] = {}
    for s in expected["suggestions"]:
        if s["user_id"] not in kept_users or s["shown_ts_ms"] is None:
            continue
        day = dt.datetime.fromtimestamp(s["shown_ts_ms"] / 1000, dt.timezone.utc).date().isoformat()
        counts = want.setdefault((s["model_id"], s["language"], day), [0, 0])
        counts[0] += 1
        counts[1] += s["outcome"] not in ("rejected", "ignored")
    df = polars.read_delta(f"{lake}/gold/acceptance_metrics")
    got = {(r["model_id"], r["language"], str(r["day"])): [r["shown"], r["accepted"]] for r in df.iter_rows(named=True)}
    assert got == want and len(got) > 3
