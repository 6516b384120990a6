"""One writer per lake: the lease in ``_echo/lease`` and the lake's invariants."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from conftest import CONTRACT_SAMPLE, ROOT
from helpers import read_table

from echo.errors import EchoError, LakeError
from echo.lake import open_lake
from echo.lake.lease import FORMAT_VERSION, DeltaRsLeaseStore, LakeBusy, Lease, hold
from echo.lake.tables import ALL_TABLES


def _lake(spark: Any, root: str) -> Any:
    lk = open_lake(spark, root, "delta-rs")
    lk.check_root(create=True)
    return lk


def _lease(lk: Any, command: str = "run", **kw: Any) -> Lease:
    return Lease(DeltaRsLeaseStore(lk), lk.root, command, **kw)


def test_a_new_lake_records_its_buckets_and_format_version(spark, lake):
    lk = _lake(spark, lake)
    row = _lease(lk).acquire(buckets=8)
    assert (row["buckets"], row["format_version"], row["state"]) == (8, FORMAT_VERSION, "held")


def test_a_lake_of_an_older_format_is_refused_in_one_line_naming_the_migration(spark, lake):
    lk = _lake(spark, lake)
    store = DeltaRsLeaseStore(lk)
    store.create({"slot": 0, "buckets": 16, "format_version": FORMAT_VERSION - 1, "state": "released",
                  "holder": "", "command": None, "host": None, "pid": None, "acquired_ms": None,
                  "expires_ms": 0})  # fmt: skip
    with pytest.raises(LakeError, match=f"format version {FORMAT_VERSION - 1}; this Echo needs version") as err:
        _lease(lk).acquire(buckets=0)
    assert "\n" not in str(err.value) and "re-create it" in str(err.value)


def test_a_second_holder_is_refused_naming_the_first(spark, lake):
    lk = _lake(spark, lake)
    first = _lease(lk, "forget")
    first.acquire(buckets=0)
    try:
        with pytest.raises(LakeBusy, match=r"held by 'forget' \(holder " + first.holder):
            _lease(lk, "run").acquire(buckets=0)
    finally:
        first.release()


def test_a_released_lease_is_taken_by_the_next_run(spark, lake):
    lk = _lake(spark, lake)
    first = _lease(lk)
    first.acquire(buckets=0)
    first.release()
    second = _lease(lk)
    assert second.acquire(buckets=0)["holder"] == second.holder
    second.release()


def test_of_two_runs_racing_for_the_lease_exactly_one_holds_it(spark, lake):
    lk = _lake(spark, lake)
    _lease(lk).ensure(buckets=0)  # the table exists; now race on the swap itself
    leases = [_lease(lk) for _ in range(4)]
    outcomes: list[str] = []
    barrier = threading.Barrier(len(leases))

    def take(lease: Lease) -> None:
        barrier.wait()
        try:
            lease.acquire(buckets=0)
            outcomes.append("held")
        except LakeBusy:
            outcomes.append("busy")

    threads = [threading.Thread(target=take, args=(le,)) for le in leases]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["busy", "busy", "busy", "held"]
    holder = DeltaRsLeaseStore(lk).read()
    assert holder is not None
    assert [le.holder for le in leases if le.held] == [holder["holder"]]
    for le in leases:
        le.release()


class _SwapThen(DeltaRsLeaseStore):
    """The real store, running ``after`` right after a swap commits (the moment a racing
    thread of the same process can read the new row before the winner returns)."""

    def __init__(self, lk: Any, after: Any) -> None:
        super().__init__(lk)
        self.after = after

    def swap(self, expected_holder: str, expected_state: str, row: dict[str, Any]) -> None:
        super().swap(expected_holder, expected_state, row)
        self.after()


def test_a_thread_reading_the_row_while_another_takes_it_finds_the_lake_busy(spark, lake):
    lk = _lake(spark, lake)
    other = _lease(lk)
    seen: list[str] = []

    def race() -> None:
        try:
            other.acquire(buckets=0)
            seen.append("held")
        except LakeBusy:
            seen.append("busy")

    first = Lease(_SwapThen(lk, race), lk.root, "run")
    first.acquire(buckets=0)
    try:
        assert (seen, first.held, other.held) == (["busy"], True, False)
    finally:
        first.release()
        other.release()


def test_the_lease_of_a_killed_run_on_this_host_is_taken_over(spark, lake):
    lk = _lake(spark, lake)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    crashed = _lease(lk)
    crashed.acquire(buckets=0)
    crashed._stop_heartbeat()
    store = DeltaRsLeaseStore(lk)
    row = store.read()
    assert row is not None
    store.swap(crashed.holder, "held", {**row, "pid": int(dead.stdout)})  # as if that process held it
    successor = _lease(lk)
    assert successor.acquire(buckets=0)["holder"] == successor.holder
    successor.release()


def test_an_expired_lease_is_taken_over(spark, lake):
    lk = _lake(spark, lake)
    stale = _lease(lk, ttl_s=0.05)
    stale.acquire(buckets=0)
    stale._stop_heartbeat()  # a holder that stopped renewing (a hung or partitioned driver)
    store = DeltaRsLeaseStore(lk)
    row = store.read()
    assert row is not None
    store.swap(stale.holder, "held", {**row, "host": "another-host"})  # no pid check possible
    import time

    time.sleep(0.1)
    successor = _lease(lk)
    assert successor.acquire(buckets=0)["holder"] == successor.holder
    successor.release()


def test_a_run_that_lost_its_lease_cannot_commit(spark, lake):
    from echo.lake.tables import STAGE_STATE

    lk = _lake(spark, lake)
    lease = hold(lk, "run", buckets=0)
    lease._stop_heartbeat()
    store = DeltaRsLeaseStore(lk)
    row = store.read()
    assert row is not None
    store.swap(lease.holder, "held", {**row, "holder": "intruder"})  # taken over meanwhile
    lease.renew()
    with pytest.raises(LakeError, match="taken over by"):
        lk.ensure(STAGE_STATE)
    assert not lk.exists(STAGE_STATE)


def test_a_run_while_another_holds_the_lake_is_refused_and_writes_nothing(spark, lake):
    from echo.jobs import run

    lk = _lake(spark, lake)
    other = _lease(lk, "forget")
    other.acquire(buckets=0)
    try:
        with pytest.raises(LakeBusy, match="held by 'forget'"):
            run.main(["--events", str(CONTRACT_SAMPLE / "events.jsonl"), "--lake", lake, "--quiet"])
        assert not any(lk.exists(t) for t in ALL_TABLES)
    finally:
        other.release()
    assert run.main(["--events", str(CONTRACT_SAMPLE / "events.jsonl"), "--lake", lake, "--quiet"]) == 0
    assert len(read_table(lake, "silver/suggestions")) > 0


def test_a_run_with_other_buckets_than_the_lakes_is_refused_in_one_line(spark, lake):
    from echo.jobs import run

    events = str(CONTRACT_SAMPLE / "events.jsonl")
    assert run.main(["--events", events, "--lake", lake, "--quiet", "--buckets", "16"]) == 0
    versions = {t.name: open_lake(spark, lake, "delta-rs").version(t) for t in ALL_TABLES}
    with pytest.raises(EchoError, match="created with --buckets 16; this run asks for 8") as err:
        run.main(["--events", events, "--lake", lake, "--quiet", "--buckets", "8"])
    assert "\n" not in str(err.value)
    assert {t.name: open_lake(spark, lake, "delta-rs").version(t) for t in ALL_TABLES} == versions


@pytest.mark.slow  # the lake's --buckets stay checked in the default run (other buckets are refused)
def test_a_run_without_buckets_uses_the_lakes(spark, lake):
    from echo.jobs import run

    events = str(CONTRACT_SAMPLE / "events.jsonl")
    assert run.main(["--events", events, "--lake", lake, "--quiet", "--buckets", "3"]) == 0
    buckets = set(read_table(lake, "silver/suggestions")["user_bucket"])
    assert run.main(["--events", events, "--lake", lake, "--quiet"]) == 0
    assert open_lake(spark, lake, "delta-rs").buckets == 3
    assert set(read_table(lake, "silver/suggestions")["user_bucket"]) == buckets
    assert max(buckets) < 3


def _data(lake: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every data table's rows, without the columns that record when or in which run, and
    without the per-run bookkeeping tables (the loser's rerun is a run of its own)."""
    volatile = {"ingested_at", "ingest_date", "updated_at", "forgotten_at", "run_no", "source_version",
                "detail", "config"}  # fmt: skip
    bookkeeping = {"bronze/ingest_runs", "_echo/stage_state"}  # one row per run: a rerun adds one
    out = {}
    for t in ALL_TABLES:
        if t.name in bookkeeping:
            continue
        path = Path(lake) / t.name
        if not (path / "_delta_log").exists():
            continue
        df = read_table(lake, t.name)
        cols = sorted(c for c in df.columns if c not in volatile)
        out[t.name] = sorted(tuple(repr(v) for v in row) for row in df[cols].itertuples(index=False))
    return out


@pytest.mark.slow  # two JVMs at once; the held-lake refusal and the same-process race stay in the default run
def test_two_runs_started_at_once_on_one_lake_leave_it_as_one_run(spark, tmp_path):
    events = str(CONTRACT_SAMPLE / "events.jsonl")
    overlap, alone = str(tmp_path / "overlap"), str(tmp_path / "alone")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "echo", "run", "--events", events, "--lake", overlap, "--quiet"]
    procs = [subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]  # fmt: skip
    results = [(p.wait(timeout=600), p.stdout.read(), p.stderr.read()) for p in procs]  # type: ignore[union-attr]
    codes = sorted(rc for rc, _, _ in results)
    assert codes[0] == 0, results
    if codes[1] != 0:  # the loser says who holds the lake, in one line; a rerun completes the work
        (_, _, err) = next(r for r in results if r[0] != 0)
        lines = [ln for ln in err.splitlines() if ": error: " in ln]
        assert len(lines) == 1 and "is held by 'run' (holder " in lines[0], err
        assert subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True).returncode == 0
    # (both may exit 0 when one finished before the other looked: then it was sequential)
    from echo.jobs import run

    assert run.main(["--events", events, "--lake", alone, "--quiet"]) == 0
    assert _data(overlap) == _data(alone)
