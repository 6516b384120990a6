"""The Delta layer: standard Delta tables that any reader opens, atomic writes, both
backends behind one interface (delta-spark runs only where its jars are present)."""

from __future__ import annotations

import datetime
import os

import pytest
from deltalake import DeltaTable
from pyspark.sql import functions as F
from pyspark.sql.types import StructType

from echo.errors import LakeError
from echo.lake import open_lake
from echo.lake.tables import ACCEPTANCE_METRICS, STAGE_STATE, Table
from echo.lake.tables import SESSIONS as _SESSIONS
from echo.spark import delta_spark_available

# a table partitioned by a small int (the layout mechanics under test, not silver's own)
SESSIONS = Table(
    name=_SESSIONS.name,
    schema=StructType([f for f in _SESSIONS.schema.fields if f.name != "start_date"]),
    partition_by=("user_bucket",),
    keys=_SESSIONS.keys,
    description=_SESSIONS.description,
)


def rows(n: int, bucket_of=lambda i: i % 3, start: int = 0):
    return [(f"u{i}/{start}", f"u{i}", start, start + 10, 2, 1, 0.01, bucket_of(i)) for i in range(n)]


@pytest.fixture
def backend_lake(backend, spark, tmp_path):
    lake = open_lake(spark, str(tmp_path / "lake"), backend)
    lake.check_root(create=True)
    return lake


def test_append_is_read_back_by_deltalake_and_by_spark(backend_lake, spark):
    backend_lake.append(SESSIONS, spark.createDataFrame(rows(6), SESSIONS.schema))
    via_rs = DeltaTable(backend_lake.path(SESSIONS)).to_pandas()
    via_spark = backend_lake.read(SESSIONS).toPandas()
    assert sorted(via_rs.session_id) == sorted(via_spark.session_id) == sorted(r[0] for r in rows(6))
    assert sorted(via_spark.user_bucket) == sorted(r[-1] for r in rows(6))


@pytest.mark.parametrize("partition_first", [False, True], ids=["partition-column-last", "partition-column-first"])
def test_a_read_gives_the_tables_columns_in_order(backend_lake, spark, partition_first):
    table = SESSIONS
    if partition_first:  # Spark reads partition columns last: the read must reorder them
        fields = SESSIONS.schema.fields
        table = Table(name="silver/sessions_by_bucket", schema=StructType([fields[-1], *fields[:-1]]),
                      partition_by=("user_bucket",), keys=SESSIONS.keys, description="")  # fmt: skip
    written = spark.createDataFrame(rows(4), SESSIONS.schema).select(*table.columns)
    backend_lake.append(table, written)
    back = backend_lake.read(table)
    assert back.columns == table.columns
    assert sorted(map(tuple, back.collect())) == sorted(map(tuple, written.collect()))


def test_tables_have_explicit_schema_and_partitioning(backend_lake, spark):
    backend_lake.append(SESSIONS, spark.createDataFrame(rows(3), SESSIONS.schema))
    dt = DeltaTable(backend_lake.path(SESSIONS))
    assert dt.metadata().partition_columns == ["user_bucket"]
    assert [f.name for f in dt.schema().fields] == SESSIONS.columns


def test_replace_partitions_replaces_only_those_partitions_in_one_commit(backend_lake, spark):
    backend_lake.append(SESSIONS, spark.createDataFrame(rows(6), SESSIONS.schema))
    v = backend_lake.version(SESSIONS)
    new = spark.createDataFrame([("x/1", "x", 1, 2, 1, 1, 0.0, 1)], SESSIONS.schema)
    backend_lake.replace_partitions(SESSIONS, new, [1])
    assert backend_lake.version(SESSIONS) == v + 1
    got = backend_lake.read(SESSIONS).toPandas()
    assert sorted(got[got.user_bucket == 1].session_id) == ["x/1"]
    assert sorted(got[got.user_bucket != 1].session_id) == sorted(r[0] for r in rows(6) if r[-1] != 1)


def test_files_per_partition_counts_the_current_versions_files(backend_lake, spark):
    assert backend_lake.files_per_partition(SESSIONS) == {}  # no table yet
    backend_lake.append(SESSIONS, spark.createDataFrame(rows(6), SESSIONS.schema).coalesce(1))
    backend_lake.append(SESSIONS, spark.createDataFrame(rows(3, start=100), SESSIONS.schema).coalesce(1))
    assert backend_lake.files_per_partition(SESSIONS) == {"0": 2, "1": 2, "2": 2}
    new = spark.createDataFrame([("x/1", "x", 1, 2, 1, 1, 0.0, 1)], SESSIONS.schema)
    backend_lake.replace_partitions(SESSIONS, new.coalesce(1), [1])
    assert backend_lake.files_per_partition(SESSIONS) == {"0": 2, "1": 1, "2": 2}


def test_merge_upserts_on_natural_keys(backend_lake, spark):
    backend_lake.append(SESSIONS, spark.createDataFrame(rows(4), SESSIONS.schema))
    upd = spark.createDataFrame([("u1/0", "u1", 0, 99, 5, 1, 0.1, 1), ("new/0", "new", 0, 1, 1, 1, 0.0, 2)], SESSIONS.schema)
    backend_lake.merge(SESSIONS, upd)
    got = backend_lake.read(SESSIONS).toPandas().set_index("session_id")
    assert len(got) == 5 and got.loc["u1/0", "end_ts_ms"] == 99 and "new/0" in got.index


def test_merge_on_an_unpartitioned_table_is_idempotent(backend_lake, spark):
    import datetime

    now = datetime.datetime(2026, 1, 1)
    df = spark.createDataFrame([("track", 3, now, "{}")], STAGE_STATE.schema)
    backend_lake.merge(STAGE_STATE, df)
    backend_lake.merge(STAGE_STATE, df)
    assert backend_lake.read(STAGE_STATE).count() == 1


def test_history_lists_every_commit(backend_lake, spark):
    backend_lake.append(SESSIONS, spark.createDataFrame(rows(2), SESSIONS.schema))
    backend_lake.append(SESSIONS, spark.createDataFrame(rows(2, start=5), SESSIONS.schema))
    assert backend_lake.version(SESSIONS) == len(backend_lake.history(SESSIONS)) - 1


def test_failed_write_leaves_the_table_at_its_last_version(backend_lake, spark):
    backend_lake.append(SESSIONS, spark.createDataFrame(rows(3), SESSIONS.schema))
    v = backend_lake.version(SESSIONS)
    boom = F.udf(lambda s: (_ for _ in ()).throw(RuntimeError("task failed")) if s else s)
    bad = spark.createDataFrame(rows(3, start=9), SESSIONS.schema).withColumn("session_id", boom("session_id"))
    with pytest.raises(Exception, match="task failed"):
        backend_lake.append(SESSIONS, bad)
    assert backend_lake.version(SESSIONS) == v
    assert backend_lake.read(SESSIONS).count() == 3


def test_delta_rs_tables_write_a_checkpoint_every_ten_commits(spark, tmp_path):
    import datetime
    from pathlib import Path

    lake = open_lake(spark, str(tmp_path / "lake"), "delta-rs")
    lake.check_root(create=True)
    lake.ensure(STAGE_STATE)
    for run in range(1, 11):  # versions 1..10 after the create (version 0)
        now = datetime.datetime(2026, 1, 1)
        lake.merge(STAGE_STATE, spark.createDataFrame([("track", run, now, "{}")], STAGE_STATE.schema))
    log = Path(lake.path(STAGE_STATE)) / "_delta_log"
    # delta-rs checkpoints the 10th commit (version 9); without the property, the 100th
    assert sorted(p.name for p in log.glob("*.checkpoint.parquet")) == ["00000000000000000009.checkpoint.parquet"]


def test_a_table_of_an_older_lake_gets_the_checkpoint_interval_once_and_keeps_its_rows(spark, tmp_path):
    import pyarrow as pa
    from deltalake import write_deltalake

    from echo.lake.arrow import arrow_schema

    lake = open_lake(spark, str(tmp_path / "lake"), "delta-rs")
    lake.check_root(create=True)
    # created as Echo did before the property (delta-rs's defaults), with one commit of rows
    DeltaTable.create(lake.path(SESSIONS), schema=arrow_schema(SESSIONS), partition_by=["user_bucket"])
    data = pa.Table.from_pylist([dict(zip(SESSIONS.columns, r, strict=True)) for r in rows(4)], schema=arrow_schema(SESSIONS))
    write_deltalake(lake.path(SESSIONS), data, mode="append", partition_by=["user_bucket"])
    before = lake.version(SESSIONS)
    assert "delta.checkpointInterval" not in DeltaTable(lake.path(SESSIONS)).metadata().configuration
    lake.ensure(SESSIONS)
    dt = DeltaTable(lake.path(SESSIONS))
    assert dt.metadata().configuration["delta.checkpointInterval"] == "10"
    assert lake.version(SESSIONS) == before + 1
    lake.ensure(SESSIONS)  # already set: no further commit
    assert lake.version(SESSIONS) == before + 1
    assert sorted(r.session_id for r in lake.read(SESSIONS).collect()) == sorted(r[0] for r in rows(4))


def test_an_empty_table_has_its_columns_and_is_pruned_from_the_plans_over_it(spark, tmp_path):
    lake = open_lake(spark, str(tmp_path / "lake"), "delta-rs")
    empty = lake.empty(ACCEPTANCE_METRICS)
    assert [(f.name, f.dataType) for f in empty.schema.fields] == [
        (f.name, f.dataType) for f in ACCEPTANCE_METRICS.schema.fields
    ]
    assert empty.count() == 0
    other = spark.range(5).withColumnRenamed("id", "n")
    # Spark knows the relation is empty: a join with it and an aggregation over it need no
    # scan at all, and an anti-join against it is the other side alone
    joined = empty.crossJoin(other).groupBy("n").count()
    assert "LocalRelation <empty>" in joined._jdf.queryExecution().optimizedPlan().toString()
    anti = other.join(empty.select(F.lit(1).cast("long").alias("n")), "n", "left_anti")
    assert "Join" not in anti._jdf.queryExecution().optimizedPlan().toString()
    assert anti.count() == 5


def test_failed_delta_rs_write_leaves_no_staging_folder(spark, tmp_path):
    from pathlib import Path

    lake = open_lake(spark, str(tmp_path / "lake"), "delta-rs")
    lake.check_root(create=True)
    lake.append(SESSIONS, spark.createDataFrame(rows(3), SESSIONS.schema))
    boom = F.udf(lambda s: (_ for _ in ()).throw(RuntimeError("task failed")) if s else s)
    bad = spark.createDataFrame(rows(3, start=9), SESSIONS.schema).withColumn("session_id", boom("session_id"))
    with pytest.raises(Exception, match="task failed"):
        lake.append(SESSIONS, bad)
    root = Path(lake.path(SESSIONS))
    assert root.is_dir() and not list(root.glob("_staging-*"))


def test_delta_rs_files_are_spark_written_parquet_with_row_counts(spark, tmp_path):
    lake = open_lake(spark, str(tmp_path / "lake"), "delta-rs")
    lake.check_root(create=True)
    lake.append(SESSIONS, spark.createDataFrame(rows(6), SESSIONS.schema))
    import pyarrow as pa

    actions = pa.table(DeltaTable(lake.path(SESSIONS)).get_add_actions(flatten=True)).to_pylist()
    assert sum(a["num_records"] for a in actions) == 6
    assert all(a["path"].startswith("user_bucket=") for a in actions)
    assert not [p for p in os.listdir(lake.path(SESSIONS)) if p.startswith("_staging")]


def _bloom_filtered_columns(spark, uri: str) -> set[str]:
    """Columns whose chunks in every row group of a Parquet file carry a bloom filter (the
    footer as Spark's own Parquet library reads it)."""
    jvm = spark.sparkContext._jvm
    path = jvm.org.apache.hadoop.fs.Path(uri)
    conf = spark.sparkContext._jsc.hadoopConfiguration()
    reader = jvm.org.apache.parquet.hadoop.ParquetFileReader.open(jvm.org.apache.parquet.hadoop.util.HadoopInputFile.fromPath(path, conf))
    try:
        blocks = list(reader.getFooter().getBlocks())
        per_block = [{c.getPath().toDotString() for c in b.getColumns() if c.getBloomFilterOffset() >= 0} for b in blocks]
    finally:
        reader.close()
    return set.intersection(*per_block)


def test_a_table_with_bloom_filters_writes_them_in_every_file_and_only_for_those_columns(spark, tmp_path):
    from dataclasses import replace

    from echo.lake.tables import SUGGESTIONS

    assert SUGGESTIONS.bloom_filters == ("suggestion_id",)  # the column track's orphan lookup reads by value
    bloomed = replace(SESSIONS, bloom_filters=("session_id",))
    lake = open_lake(spark, str(tmp_path / "lake"), "delta-rs")
    lake.check_root(create=True)
    lake.append(bloomed, spark.createDataFrame(rows(6), SESSIONS.schema))
    lake.replace_partitions(bloomed, spark.createDataFrame(rows(6, start=5), SESSIONS.schema), [0, 1, 2])
    files = lake.files(bloomed)
    assert files
    assert [_bloom_filtered_columns(spark, f) for f in files] == [{"session_id"}] * len(files)
    plain = open_lake(spark, str(tmp_path / "plain"), "delta-rs")
    plain.check_root(create=True)
    plain.append(SESSIONS, spark.createDataFrame(rows(6), SESSIONS.schema))
    assert {frozenset(_bloom_filtered_columns(spark, f)) for f in plain.files(SESSIONS)} == {frozenset()}
    # a lookup by value through them finds exactly the rows
    found = lake.read(bloomed).where(F.col("session_id").isin(["u1/5", "u9/5", "u1/0"])).select("session_id")
    assert sorted(r[0] for r in found.collect()) == ["u1/5"]


def test_empty_table_reads_as_empty_dataframe_with_schema(spark, tmp_path):
    lake = open_lake(spark, str(tmp_path / "lake"), "delta-rs")
    df = lake.read(ACCEPTANCE_METRICS)
    assert df.count() == 0 and df.columns == ACCEPTANCE_METRICS.columns


def test_directory_that_is_not_a_delta_table_is_refused(spark, tmp_path):
    lake = open_lake(spark, str(tmp_path / "lake"), "delta-rs")
    lake.check_root(create=True)
    os.makedirs(lake.path(SESSIONS))
    open(os.path.join(lake.path(SESSIONS), "junk.txt"), "w").close()
    with pytest.raises(LakeError, match="not a Delta table"):
        lake.read(SESSIONS)


def test_forcing_delta_spark_without_jars_is_a_clear_error(spark, tmp_path):
    if delta_spark_available(spark):
        pytest.skip("delta-spark is available here")
    with pytest.raises(LakeError, match="delta-spark jars") as err:
        open_lake(spark, str(tmp_path / "lake"), "delta-spark")
    assert "\n" not in str(err.value) and "io.delta.tables.DeltaTable" in str(err.value)


def _parquet_holding(root: str, needle: str) -> list[str]:
    """Parquet files under ``root`` (referenced by the log or not) with ``needle`` in a
    string column: what is physically in storage, whatever the Delta log says."""
    import pathlib

    import pyarrow.parquet as pq

    hits = []
    for f in pathlib.Path(root).rglob("*.parquet"):
        t = pq.read_table(f)
        for name in t.column_names:
            if str(t.schema.field(name).type) in ("string", "large_string") and needle in t.column(name).to_pylist():
                hits.append(str(f))
    return hits


def _entries(root: str) -> set[str]:
    """Files and directories under a table root, its Delta log aside."""
    out = set()
    for d, dirs, files in os.walk(root):
        dirs[:] = [x for x in dirs if x != "_delta_log"]
        out.update(os.path.join(d, n) for n in [*dirs, *files])
    return out


def test_delete_then_purge_and_vacuum_leaves_no_file_with_the_rows(backend_lake, spark):
    backend_lake.append(SESSIONS, spark.createDataFrame(rows(6), SESSIONS.schema))
    if backend_lake.backend_name == "delta-spark":
        # the Databricks default for new tables: a DELETE may then only mark rows (whether
        # it does, or drops a file whose rows all go, is Delta's choice: not asserted)
        spark.sql(f"ALTER TABLE {backend_lake.ident(SESSIONS)} SET TBLPROPERTIES ('delta.enableDeletionVectors' = true)")
    table_dir = backend_lake.path(SESSIONS)
    assert _parquet_holding(table_dir, "u1")
    assert backend_lake.delete(SESSIONS, "user_id = 'u1'") == 1
    assert backend_lake.read(SESSIONS).where("user_id = 'u1'").count() == 0
    backend_lake.purge(SESSIONS)
    before = _entries(table_dir)
    removed = backend_lake.vacuum(SESSIONS, 0)
    assert removed == len(before - _entries(table_dir)) >= 1  # what vacuum reports is what went
    assert _parquet_holding(table_dir, "u1") == []
    assert sorted(r[0] for r in backend_lake.read(SESSIONS).select("user_id").collect()) == [
        f"u{i}" for i in range(6) if i != 1
    ]
    assert sorted(DeltaTable(table_dir).to_pandas().user_id) == [f"u{i}" for i in range(6) if i != 1]


@pytest.mark.delta_spark
def test_delta_spark_vacuum_keeps_the_sessions_retention_check(spark, tmp_path):
    from echo.lake.delta_spark import RETENTION_CHECK
    from tests.conftest import skip_without_delta_spark

    skip_without_delta_spark(spark)
    lake = open_lake(spark, str(tmp_path / "lake"), "delta-spark")
    lake.check_root(create=True)
    lake.append(SESSIONS, spark.createDataFrame(rows(3), SESSIONS.schema))
    before = spark.conf.get(RETENTION_CHECK, None)
    lake.vacuum(SESSIONS, 0)
    assert spark.conf.get(RETENTION_CHECK, None) == before


def test_delta_rs_refuses_a_unity_catalog_root(spark, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the old behaviour created ./uc:main.echo here
    with pytest.raises(LakeError, match="Unity Catalog names need the delta-spark backend") as err:
        open_lake(spark, "uc:main.echo", "delta-rs")
    assert "\n" not in str(err.value) and "--lake-backend delta-spark" in str(err.value)
    if not delta_spark_available(spark):  # auto falls back to delta-rs here: same refusal
        with pytest.raises(LakeError, match="Unity Catalog"):
            open_lake(spark, "uc:main.echo", "auto")
    assert os.listdir(tmp_path) == []


@pytest.mark.delta_spark
def test_delta_spark_maps_tables_to_unity_catalog_names_and_paths(spark, tmp_path):
    # the naming is pure: DeltaSparkLake is built directly, no jars needed
    from echo.lake.delta_spark import DeltaSparkLake, uc_table_name
    from echo.lake.tables import ALL_TABLES, EVENTS, FORGOTTEN_USERS

    uc = DeltaSparkLake(spark, "uc:main.echo")
    assert uc.catalog == "main.echo"
    assert uc.ident(SESSIONS) == "main.echo.silver_sessions"
    assert uc.ident(EVENTS) == "main.echo.bronze_events"
    assert uc.ident(FORGOTTEN_USERS) == "main.echo._echo_forgotten_users"
    names = [uc.ident(t) for t in ALL_TABLES]
    assert len(set(names)) == len(ALL_TABLES)  # no two tables share a name
    assert all(n == uc_table_name("main.echo", t) and n.count(".") == 2 for n, t in zip(names, ALL_TABLES, strict=True))
    uc.check_root(create=True)  # Unity Catalog governs the schema: nothing is written
    assert not os.path.exists("uc:main.echo")

    local = DeltaSparkLake(spark, str(tmp_path / "lake"))
    assert local.catalog is None
    assert local.ident(SESSIONS) == f"delta.`file:{tmp_path}/lake/silver/sessions`"
    s3 = DeltaSparkLake(spark, "s3://bucket/lake/")
    assert s3.ident(EVENTS) == "delta.`s3a://bucket/lake/bronze/events`"
    for bad in ("uc:", "uc:main", "uc:main.echo.extra", "uc:.echo"):
        with pytest.raises(LakeError, match=r"uc:CATALOG\.SCHEMA"):
            DeltaSparkLake(spark, bad)


def test_small_rows_are_the_rows_a_spark_read_gives(backend_lake, spark):
    assert backend_lake.small_rows(STAGE_STATE, ("stage", "run_no")) == []  # no table yet
    now = datetime.datetime(2026, 12, 7, tzinfo=datetime.timezone.utc)
    stored = [("ingest", 3, now, '{"a": 1}'), ("track", 2, now, None)]
    backend_lake.append(STAGE_STATE, spark.createDataFrame(stored, STAGE_STATE.schema))
    got = backend_lake.small_rows(STAGE_STATE, ("stage", "run_no", "detail"))
    assert sorted(got) == sorted(tuple(r) for r in backend_lake.read(STAGE_STATE).select("stage", "run_no", "detail").collect())
    assert sorted(got) == [("ingest", 3, '{"a": 1}'), ("track", 2, None)]


def test_small_rows_on_delta_rs_run_no_spark_job_and_count_their_bytes(spark, tmp_path):
    lake = open_lake(spark, str(tmp_path / "lake"), "delta-rs")
    lake.check_root(create=True)
    now = datetime.datetime(2026, 12, 7, tzinfo=datetime.timezone.utc)
    lake.append(STAGE_STATE, spark.createDataFrame([("ingest", 1, now, None)], STAGE_STATE.schema))
    tracker = spark.sparkContext.statusTracker()
    spark.sparkContext.setJobGroup("small-rows", "small_rows")
    try:
        before = lake.bytes_read
        assert lake.small_rows(STAGE_STATE, ("run_no",)) == [(1,)]
        assert lake.bytes_read > before
        assert tracker.getJobIdsForGroup("small-rows") == []
        lake.read(STAGE_STATE).collect()  # the check itself sees a Spark job when one runs
        assert tracker.getJobIdsForGroup("small-rows") != []
    finally:
        spark.sparkContext.setJobGroup("", "")


def test_upsert_rows_replace_the_rows_of_their_keys_in_one_commit_and_keep_the_others(backend_lake, spark):
    t1 = datetime.datetime(2026, 12, 7, 1, tzinfo=datetime.timezone.utc)
    t2 = datetime.datetime(2026, 12, 7, 2, tzinfo=datetime.timezone.utc)
    backend_lake.upsert_rows(STAGE_STATE, [("ingest", 1, t1, "a"), ("track", 1, t1, None)])
    v = backend_lake.version(STAGE_STATE)
    backend_lake.upsert_rows(STAGE_STATE, [("track", 2, t2, "b")])
    assert backend_lake.version(STAGE_STATE) == v + 1
    got = backend_lake.read(STAGE_STATE).select("stage", "run_no", "detail").collect()
    assert sorted(map(tuple, got)) == [("ingest", 1, "a"), ("track", 2, "b")]
    stored = DeltaTable(backend_lake.path(STAGE_STATE)).to_pyarrow_table().to_pylist()
    assert sorted((r["stage"], r["updated_at"]) for r in stored) == [("ingest", t1), ("track", t2)]


def test_append_rows_add_rows_in_one_commit(backend_lake, spark):
    t1 = datetime.datetime(2026, 12, 7, 1, tzinfo=datetime.timezone.utc)
    backend_lake.append_rows(STAGE_STATE, [("ingest", 1, t1, "a")])
    v = backend_lake.version(STAGE_STATE)
    backend_lake.append_rows(STAGE_STATE, [("track", 2, t1, None), ("pairs", 3, t1, "c")])
    assert backend_lake.version(STAGE_STATE) == v + 1
    got = backend_lake.read(STAGE_STATE).select("stage", "run_no", "detail").collect()
    assert sorted(map(tuple, got)) == [("ingest", 1, "a"), ("pairs", 3, "c"), ("track", 2, None)]


def test_row_writes_on_delta_rs_run_no_spark_job(spark, tmp_path):
    lake = open_lake(spark, str(tmp_path / "lake"), "delta-rs")
    lake.check_root(create=True)
    now = datetime.datetime(2026, 12, 7, tzinfo=datetime.timezone.utc)
    lake.upsert_rows(STAGE_STATE, [("ingest", 1, now, None)])
    spark.sparkContext.setJobGroup("row-writes", "upsert_rows, append_rows")
    try:
        lake.upsert_rows(STAGE_STATE, [("ingest", 2, now, None)])
        lake.append_rows(STAGE_STATE, [("track", 1, now, None)])
        assert spark.sparkContext.statusTracker().getJobIdsForGroup("row-writes") == []
    finally:
        spark.sparkContext.setJobGroup("", "")
    assert sorted(lake.small_rows(STAGE_STATE, ("stage", "run_no"))) == [("ingest", 2), ("track", 1)]
