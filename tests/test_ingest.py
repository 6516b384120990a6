"""Ingest on Spark with real Delta tables: duplicates, conflicts, ordering, formats, counts."""

from __future__ import annotations

import gzip
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from deltalake import DeltaTable

from tests.events import Ev
from tests.helpers import read_table, run_stages, write_jsonl

BAD = b'{"event_id": "bad-1", "event_type": "shown"'  # truncated JSON


@pytest.fixture(scope="module")
def batches(spark, tmp_path_factory):
    d = tmp_path_factory.mktemp("ingest")
    ev = Ev()
    e1 = ev.shown("s1", "print(1)")
    e2 = ev.edit(0, 0, "x")
    e6 = ev.edit(1, 0, "A")
    e6_other = dict(e6, insert_text="B")
    e2_conflict = dict(e2, insert_text="CONFLICT")
    a = write_jsonl(d / "b1" / "a.jsonl", [
        e1,
        json.dumps(dict(reversed(list(e1.items()))), indent=None),  # same content, other key order
        "",
        "   ",
        e2,
        e2_conflict,
        BAD,
        BAD,
        e6,
    ])  # fmt: skip
    b = d / "b1" / "b.jsonl.gz"
    e3 = ev.edit(2, 0, "y")
    with gzip.open(b, "wb") as fh:
        fh.write((json.dumps(e3) + "\n" + json.dumps(e6_other) + "\n").encode())
    e2_conflict2 = dict(e2, insert_text="ANOTHER")
    e7 = ev.edit(3, 0, "z")
    c = write_jsonl(d / "b2" / "c.jsonl", [e1, e2_conflict, e2_conflict2, BAD, e7])
    e8 = ev.edit(4, 0, "w")
    rows = [e8, dict(ev.edit(5, 0, "v"), offset="5")]
    keys = sorted({k for r in rows for k in r})
    table = pa.table({k: [str(r.get(k)) if k == "offset" and r is rows[1] else r.get(k) for r in rows] for k in keys if k != "offset"})
    table = table.append_column("offset", pa.array(["4", "5"]))  # a string offset: wrong_type in Parquet
    table = table.set_column(table.schema.get_field_index("offset"), "offset", pa.array([4, None], pa.int64()))
    p = d / "b3" / "d.parquet"
    p.parent.mkdir()
    pq.write_table(table, p)
    lake = str(d / "lake")
    run_stages([a, b], lake, stages=("ingest",))
    run_stages([c], lake, stages=("ingest",))
    run_stages([p], lake, stages=("ingest",))
    return {"lake": lake, "e1": e1, "e2": e2, "e6": e6, "e7": e7, "e8": e8, "a": str(a), "b": str(b), "c": str(c),
            "p": str(p)}


def runs(lake):
    return read_table(lake, "bronze/ingest_runs").sort_values("run_no").reset_index(drop=True)


def test_identical_duplicate_in_same_file_is_kept_once(batches):
    ev = read_table(batches["lake"], "bronze/events")
    assert (ev.event_id == batches["e1"]["event_id"]).sum() == 1


def test_conflicting_duplicate_keeps_the_first_line(batches):
    ev = read_table(batches["lake"], "bronze/events").set_index("event_id")
    assert ev.loc[batches["e2"]["event_id"], "insert_text"] == "x"


def test_conflicting_duplicate_first_is_the_earlier_path_on_the_command_line(batches):
    ev = read_table(batches["lake"], "bronze/events").set_index("event_id")
    assert ev.loc[batches["e6"]["event_id"], "insert_text"] == "A"
    q = read_table(batches["lake"], "bronze/quarantine")
    conflict_b = q[(q.event_id == batches["e6"]["event_id"])]
    assert list(conflict_b.reason) == ["conflicting_duplicate"]
    assert list(conflict_b.source) == [batches["b"]]


def test_identical_duplicate_in_a_later_batch_is_a_duplicate(batches):
    r = runs(batches["lake"])
    assert r.loc[1, "duplicates"] >= 1
    ev = read_table(batches["lake"], "bronze/events")
    assert (ev.event_id == batches["e1"]["event_id"]).sum() == 1


def test_conflicting_duplicate_in_a_later_batch_is_quarantined(batches):
    q = read_table(batches["lake"], "bronze/quarantine")
    texts = sorted(json.loads(r)["insert_text"] for r in q[q.event_id == batches["e2"]["event_id"]].raw)
    assert texts == ["ANOTHER", "CONFLICT"]  # CONFLICT once, though it came in two batches


def test_already_quarantined_record_counts_as_duplicate(batches):
    q = read_table(batches["lake"], "bronze/quarantine")
    assert (q.reason == "invalid_json").sum() == 1  # BAD came twice in batch 1 and once in batch 2
    r = runs(batches["lake"])
    assert r.loc[1, "quarantined"] == 1  # batch 2: only ANOTHER is new


def test_blank_lines_are_not_records(batches):
    assert runs(batches["lake"]).loc[0, "records_read"] == 9  # 9 lines in a, 2 of them blank, + 2 in b.gz


def test_counts_add_up_for_every_run(batches):
    r = runs(batches["lake"])
    assert ((r.kept + r.duplicates + r.quarantined) == r.records_read).all()
    reasons = [sum(json.loads(x).values()) for x in r.quarantined_by_reason]
    assert reasons == list(r.quarantined)


def test_gzip_input_is_read(batches):
    ev = read_table(batches["lake"], "bronze/events")
    assert set(ev[ev.source == batches["b"]].insert_text) == {"y"}


def test_parquet_input_is_read_and_validated(batches):
    ev = read_table(batches["lake"], "bronze/events")
    assert batches["e8"]["event_id"] in set(ev.event_id)
    q = read_table(batches["lake"], "bronze/quarantine")
    pq_rows = q[q.source.str.endswith("d.parquet")]
    assert list(pq_rows.reason) == ["missing_field"]  # the null offset counts as absent


def test_quarantine_keeps_raw_bytes_and_line(batches):
    q = read_table(batches["lake"], "bronze/quarantine")
    bad = q[q.reason == "invalid_json"].iloc[0]
    assert bytes(bad.raw_bytes) == BAD
    assert bad.source == batches["a"] and bad.line_no == 7


def test_conflicting_duplicate_keeps_its_line_as_raw_bytes(batches):
    q = read_table(batches["lake"], "bronze/quarantine")
    conflicts = q[q.reason == "conflicting_duplicate"]
    assert set(conflicts.source) == {batches["a"], batches["b"], batches["c"]}  # plain and gzip inputs
    for row in conflicts.itertuples():
        with (gzip.open(row.source) if row.source.endswith(".gz") else open(row.source, "rb")) as fh:
            line = fh.read().split(b"\n")[row.line_no - 1]
        assert bytes(row.raw_bytes) == line
        assert row.raw == line.decode()


def test_a_conflicting_copy_in_parquet_keeps_its_row_as_raw_text(spark, tmp_path):
    e = Ev().edit(0, 0, "x")
    rows = [e, dict(e, insert_text="CONFLICT")]
    p = tmp_path / "in" / "events.parquet"
    p.parent.mkdir()
    pq.write_table(pa.Table.from_pylist(rows), p)
    lake = str(tmp_path / "lake")
    run_stages([p], lake, stages=("ingest",))
    (row,) = read_table(lake, "bronze/quarantine").itertuples()
    assert row.reason == "conflicting_duplicate"
    assert json.loads(row.raw)["insert_text"] == "CONFLICT"
    assert bytes(row.raw_bytes) == row.raw.encode()


def test_bronze_events_partitioned_by_event_date(batches):
    dt = DeltaTable(f"{batches['lake']}/bronze/events")
    assert dt.metadata().partition_columns == ["event_date"]


def _bronze(lake):
    out = {}
    for name in ("bronze/events", "bronze/quarantine", "_echo/event_index"):
        df = read_table(lake, name).drop(columns=["ingested_at", "ingest_date"], errors="ignore")
        out[name] = sorted(map(repr, df.to_dict("records")))
    cols = ["run_no", "records_read", "kept", "duplicates", "quarantined", "quarantined_by_reason"]
    out["bronze/ingest_runs"] = runs(lake)[cols].to_dict("records")
    return out


def test_records_not_kept_join_back_by_a_shuffle_when_too_many_to_broadcast(batches, tmp_path, monkeypatch):
    import echo.jobs.ingest as ingest_job

    monkeypatch.setattr(ingest_job, "BROADCAST_EXCEPTIONS", 0)
    lake = str(tmp_path / "lake")
    for files in ([batches["a"], batches["b"]], [batches["c"]], [batches["p"]]):
        run_stages(files, lake, stages=("ingest",))
    assert _bronze(lake) == _bronze(batches["lake"])


def test_missing_input_is_a_one_line_error(tmp_path, capsys):
    from echo.cli import main

    rc = main(["ingest", "--events", str(tmp_path / "nope.jsonl"), "--lake", str(tmp_path / "lake")])
    err = capsys.readouterr().err.strip()
    assert rc != 0
    assert len(err.splitlines()) == 1 and "input not found" in err
    assert not (tmp_path / "lake").exists()


def test_lake_that_is_not_an_echo_lake_is_refused(tmp_path, capsys, spark):
    from echo.cli import main

    (tmp_path / "notalake").mkdir()
    (tmp_path / "notalake" / "data.csv").write_text("a,b\n")
    events = write_jsonl(tmp_path / "e.jsonl", [Ev().edit(0, 0, "a")])
    rc = main(["ingest", "--events", str(events), "--lake", str(tmp_path / "notalake"), "--quiet"])
    err = capsys.readouterr().err.strip()
    assert rc != 0 and "not an Echo lake" in err and len(err.splitlines()) == 1
    assert sorted(p.name for p in (tmp_path / "notalake").iterdir()) == ["data.csv"]


def _index_rows(lake, buckets):
    from echo.lake.tables import EVENT_INDEX

    return sorted(tuple(r) for r in lake.read_partitions(EVENT_INDEX, buckets).collect())


def test_event_index_writes_one_file_per_bucket_and_compacts_the_most_crowded(spark, tmp_path, monkeypatch):
    import datetime

    from pyspark.sql import functions as F

    import echo.jobs.ingest as ingest_job
    from echo.lake import open_lake
    from echo.lake.tables import EVENT_INDEX, EVENT_INDEX_BUCKETS
    from echo.stages.ingest import to_event_index

    lake = open_lake(spark, str(tmp_path / "lake"))
    lake.check_root(create=True)
    lake.ensure(EVENT_INDEX)
    day = datetime.date(2024, 3, 1)

    def kept(run: int, n: int, bucket: int | None = None):
        df = spark.createDataFrame([(f"e{run}-{i}", day, run) for i in range(n)], "event_id string, event_date date, run_no long")
        if bucket is not None:
            df = df.where(F.pmod(F.xxhash64("event_id"), F.lit(EVENT_INDEX_BUCKETS)) == bucket)
        return to_event_index(df)

    monkeypatch.setattr(ingest_job, "EVENT_INDEX_COMPACT", 2)
    lake.append(EVENT_INDEX, kept(1, 600))
    assert set(lake.files_per_partition(EVENT_INDEX).values()) == {1}  # one file per bucket and run
    assert ingest_job.compact_event_index(lake) == []  # no bucket holds 2 files yet
    lake.append(EVENT_INDEX, kept(2, 600))
    lake.append(EVENT_INDEX, kept(3, 600, bucket=63))
    before = lake.files_per_partition(EVENT_INDEX)
    assert before["63"] == 3 and len(before) == EVENT_INDEX_BUCKETS
    rows = _index_rows(lake, list(range(EVENT_INDEX_BUCKETS)))
    version = lake.version(EVENT_INDEX)
    compacted = ingest_job.compact_event_index(lake)
    # the most crowded first (63), then the lowest bucket with 2 files; at most 2 (the limit)
    first_with_two = min(int(b) for b, n in before.items() if n == 2)
    assert compacted == sorted([first_with_two, 63])
    assert lake.version(EVENT_INDEX) == version + 1  # one commit
    after = lake.files_per_partition(EVENT_INDEX)
    assert {b: after[str(b)] for b in compacted} == {b: 1 for b in compacted}
    assert {b: n for b, n in after.items() if int(b) not in compacted} == {
        b: n for b, n in before.items() if int(b) not in compacted
    }
    assert _index_rows(lake, list(range(EVENT_INDEX_BUCKETS))) == rows  # the same rows


def test_leftovers_of_a_run_that_began_writing_are_found_and_a_published_run_needs_no_scan(spark, tmp_path):
    import datetime

    from echo.jobs.state import abandon_writing, begin_writing, unpublished_rows
    from echo.lake import open_lake
    from echo.lake.tables import EVENT_INDEX

    lake = open_lake(spark, str(tmp_path / "lake"))
    lake.check_root(create=True)
    lake.ensure(EVENT_INDEX)
    row = spark.createDataFrame([(3, 42, datetime.date(2024, 3, 1), 1)], EVENT_INDEX.schema)
    lake.append(EVENT_INDEX, row)  # a row of run 1, which has not published
    assert unpublished_rows(lake, 0) == {"_echo/event_index": 1}  # no run recorded: scanned
    begin_writing(lake, 1)
    assert unpublished_rows(lake, 0) == {"_echo/event_index": 1}  # run 1 began and is not published
    # once run 1 is published, the newest run that began is published: nothing is read
    # (the row is run 1's own now, and a row above it could only come after run 2 began)
    assert unpublished_rows(lake, 1) == {}
    lake.append(EVENT_INDEX, spark.createDataFrame([(3, 43, datetime.date(2024, 3, 1), 2)], EVENT_INDEX.schema))
    assert unpublished_rows(lake, 1) == {}  # trusts the record: run 2 never began writing
    begin_writing(lake, 2)
    assert unpublished_rows(lake, 1) == {"_echo/event_index": 1}
    abandon_writing(lake, 1)  # run 2's rows deleted (an input changed): run 1 is the newest again
    assert unpublished_rows(lake, 1) == {}


def test_ingest_builds_its_caches_unencoded_and_restores_the_sessions_setting(spark, batches, tmp_path, monkeypatch):
    import echo.jobs.ingest as ingest_job

    (key, during), = ingest_job.CACHE_CONF.items()
    before = "false" if during == "true" else "true"
    seen = []
    real = ingest_job.read_records

    def read_records(*args, **kwargs):  # the real reader, noting the setting its caches are built under
        seen.append(spark.conf.get(key))
        return real(*args, **kwargs)

    monkeypatch.setattr(ingest_job, "read_records", read_records)
    spark.conf.set(key, before)
    try:
        run_stages([batches["c"]], str(tmp_path / "lake"), stages=("ingest",))
        assert seen == [during]
        assert spark.conf.get(key) == before
    finally:
        spark.conf.unset(key)
