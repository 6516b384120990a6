"""Bad days: a full disk or a read-only lake mid-run, and inputs that change or vanish
while they are read. Each gives a one-line error, leaves every table at a committed
version, publishes nothing half-written, and the next run completes the work."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from echo.errors import InputError
from echo.lake.tables import ALL_TABLES
from echo.sources import changed_inputs, list_inputs
from tests.conftest import CONTRACT_SAMPLE, ROOT
from tests.events import Ev
from tests.helpers import write_jsonl
from tests.test_crash import snapshot


def _events(user: str, t0: int = 1_700_000_000_000) -> list[Any]:
    ev = Ev(user=user, t0=t0)
    return [
        ev.shown("s1", "x = 1"),
        ev.accepted("s1", "x = 1"),
        '{"broken": ',
        ev.edit(0, 0, "# hi\n"),
    ]


def _versions(lake: Path) -> dict[str, int | None]:
    from deltalake import DeltaTable

    out: dict[str, int | None] = {}
    for t in ALL_TABLES:
        p = lake / t.name
        out[t.name] = DeltaTable(str(p)).version() if (p / "_delta_log").is_dir() else None
    return out


# -- inputs that change while they are read -------------------------------------------------


def test_changed_inputs_names_files_written_to_rewritten_or_deleted_after_listing(
    tmp_path: Path,
) -> None:
    names = ("same", "grown", "rewritten", "gone")
    paths = {n: write_jsonl(tmp_path / f"{n}.jsonl", [{"n": n}]) for n in names}
    files = list_inputs([str(p) for p in paths.values()])
    assert changed_inputs(files) == []
    with open(paths["grown"], "ab") as fh:
        fh.write(b'{"late": 1}\n')
    st = paths["rewritten"].stat()
    paths["rewritten"].write_bytes(paths["rewritten"].read_bytes().replace(b"w", b"W"))  # same size
    os.utime(paths["rewritten"], ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    paths["gone"].unlink()
    changed = changed_inputs(files)
    assert [c.split(" (")[0] for c in changed] == [
        str(paths[n]) for n in ("grown", "rewritten", "gone")
    ]
    assert "(vanished)" in changed[2] and "(size" in changed[0] and "(modified)" in changed[1]


@pytest.mark.slow  # an input that changes under a run stays in the default run (one that vanishes)
def test_an_input_written_to_while_it_is_read_is_refused_and_no_table_changes(
    spark: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import echo.jobs.ingest as ingest_job
    from echo.cli import main

    lake = tmp_path / "lake"
    assert (
        main(
            [
                "ingest",
                "--events",
                str(write_jsonl(tmp_path / "a.jsonl", _events("u1"))),
                "--lake",
                str(lake),
                "--quiet",
            ]
        )
        == 0
    )
    before, versions = snapshot(lake), _versions(lake)
    growing = write_jsonl(tmp_path / "b.jsonl", _events("u2"))
    real = ingest_job.count_outcomes

    def read_while_a_writer_appends(classified: Any) -> dict[str, object]:
        out = real(classified)  # every record of the file has been read by now
        with open(growing, "ab") as fh:  # the writer was not done
            fh.write(json.dumps(Ev(user="u2", doc="d9").shown("s9", "y = 2")).encode() + b"\n")
        return out

    monkeypatch.setattr(ingest_job, "count_outcomes", read_while_a_writer_appends)
    capsys.readouterr()
    assert main(["ingest", "--events", str(growing), "--lake", str(lake), "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "input changed while it was read" in err[0] and str(growing) in err[0]
    assert _versions(lake) == versions  # not one commit
    assert snapshot(lake) == before


@pytest.mark.slow  # an input that vanishes before the run publishes stays in the default run
def test_an_input_that_vanishes_before_its_conflicting_copies_are_read_again_is_refused(
    spark: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ingest reads the lines of conflicting copies again after classifying: an input gone
    by then is a one-line InputError, and nothing is written."""
    import echo.jobs.ingest as ingest_job
    from echo.jobs import ingest

    lake = tmp_path / "lake"
    first = write_jsonl(tmp_path / "a.jsonl", _events("u1"))
    assert ingest.main(["--events", str(first), "--lake", str(lake), "--quiet"]) == 0
    before = snapshot(lake)
    shown = Ev(user="u1").shown("s1", "x = 1")
    doomed = write_jsonl(tmp_path / "b.jsonl", [{**shown, "text": "x = 2"}])  # conflicts with a.jsonl's
    real = ingest_job.read_lines

    def vanish_first(files: Any, positions: Any, **kw: Any) -> Any:
        doomed.unlink()
        return real(files, positions, **kw)

    monkeypatch.setattr(ingest_job, "read_lines", vanish_first)
    with pytest.raises(InputError, match=r"^cannot read inputs: ") as err:
        ingest.main(["--events", str(doomed), "--lake", str(lake), "--quiet"])
    assert len(str(err.value).splitlines()) == 1
    assert not doomed.exists()  # the re-read was reached
    assert snapshot(lake) == before


def test_an_input_that_vanishes_before_the_run_is_published_is_refused_and_its_rows_undone(
    spark: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import echo.jobs.ingest as ingest_job
    from echo.jobs import ingest

    lake = tmp_path / "lake"
    first = write_jsonl(tmp_path / "a.jsonl", _events("u1"))
    assert ingest.main(["--events", str(first), "--lake", str(lake), "--quiet"]) == 0
    before = snapshot(lake)
    doomed = write_jsonl(tmp_path / "b.jsonl", _events("u2"))
    kept = doomed.read_bytes()
    checks: list[list[str]] = []
    real = ingest_job.changed_inputs

    def vanish_after_the_rows_are_committed(files: Any) -> list[str]:
        if checks:  # the second check: bronze rows are committed, the run record is not
            doomed.unlink()
        checks.append(real(files))
        return checks[-1]

    monkeypatch.setattr(ingest_job, "changed_inputs", vanish_after_the_rows_are_committed)
    with pytest.raises(
        InputError, match=r"input changed while it was read: .*b\.jsonl \(vanished\)"
    ):
        ingest.main(["--events", str(doomed), "--lake", str(lake), "--quiet"])
    assert len(checks) == 2
    assert snapshot(lake) == before  # the committed rows of the refused run are gone again

    monkeypatch.undo()
    doomed.write_bytes(kept)  # the complete file, delivered again
    report = tmp_path / "r.json"
    assert (
        ingest.main(
            ["--events", str(doomed), "--lake", str(lake), "--quiet", "--report", str(report)]
        )
        == 0
    )
    again = json.loads(report.read_text())
    # its malformed line has the same bytes as the first file's, already quarantined in
    # run 1: a duplicate (CONTRACT 1.2), not a second quarantine row
    assert (again["run_no"], again["kept"], again["quarantined"], again["duplicates"]) == (2, 3, 0, 1)


# -- full or read-only storage ---------------------------------------------------------------


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    """A 64 MiB tmpfs: a disk that can fill up and be remounted read-only (root only;
    chmod does not stop root, a real filesystem does)."""
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a small filesystem needs root")
    r = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(mnt)],
        capture_output=True,
        text=True,
    )
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()[:200]}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def _fill(fs: Path) -> Path:
    """Take every free byte of ``fs`` (unbuffered, so nothing is left to flush)."""
    filler = fs / "filler"
    with open(filler, "wb", buffering=0) as fh:
        try:
            while fh.write(b"\0" * (1 << 16)):
                pass
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
    return filler


@pytest.mark.slow  # a failed write's one line and untouched lake stay in the default run (a read-only lake)
def test_a_disk_that_fills_mid_run_gives_one_line_and_the_next_run_completes(
    spark: Any, small_fs: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import echo.lake.guard as guard
    from echo.cli import main

    lake = small_fs / "lake"
    filled: list[Path] = []
    real = guard.commit_point

    def fill_after_events(when: str, table: str, op: str) -> None:
        real(when, table, op)
        if (when, table, op) == ("after", "bronze/events", "append") and not filled:
            filled.append(_fill(small_fs))

    monkeypatch.setattr(guard, "commit_point", fill_after_events)
    argv = [
        "run",
        "--events",
        str(CONTRACT_SAMPLE / "events.jsonl"),
        "--lake",
        str(lake),
        "--quiet",
    ]
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert (
        len(err) == 1 and "No space left on device" in err[0] and "_echo/event_index" in err[0]
    ), err  # the write after bronze/events: the event index of the kept events
    for name, version in _versions(lake).items():  # every table is a readable, committed version
        assert version is None or version >= 0, name
    assert snapshot(lake)["bronze/ingest_runs"] == []  # the ingest run was not published

    filled[0].unlink()  # space again
    report = small_fs / "report.json"
    assert main([*argv, "--report", str(report)]) == 0
    got = json.loads(report.read_text())["ingest"]
    expected = json.loads((CONTRACT_SAMPLE / "expected.json").read_text())
    assert {k: got[k] for k in expected["counts"]} == expected[
        "counts"
    ]  # the whole run, counted once
    assert got["run_no"] == 1 and "interrupted_run_redone" in got
    tables = snapshot(lake)
    assert len(tables["silver/suggestions"] or []) == len(expected["suggestions"])
    assert len(tables["bronze/quarantine"] or []) == len(expected["quarantine"])


def test_a_read_only_lake_gives_one_line_from_the_cli_and_no_table_changes(
    spark: Any, small_fs: Path
) -> None:
    from echo.jobs import ingest

    lake = small_fs / "lake"
    assert (
        ingest.main(
            [
                "--events",
                str(write_jsonl(small_fs / "a.jsonl", _events("u1"))),
                "--lake",
                str(lake),
                "--quiet",
            ]
        )
        == 0
    )
    versions = _versions(lake)
    second = write_jsonl(small_fs / "b.jsonl", _events("u2"))
    r = subprocess.run(["mount", "-o", "remount,ro", str(small_fs)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot remount read-only here: {r.stderr.strip()[:200]}")
    try:
        p = subprocess.run(
            [sys.executable, "-m", "echo", "ingest", "--events", str(second), "--lake", str(lake), "--quiet"],
            capture_output=True, text=True, timeout=1800, env={**os.environ, "PYTHONPATH": str(ROOT)},
        )  # fmt: skip
    finally:
        subprocess.run(["mount", "-o", "remount,rw", str(small_fs)], capture_output=True)
    lines = [ln for ln in p.stderr.splitlines() if ln.strip() and not _jvm_banner(ln)]
    assert p.returncode == 2, p.stderr[-3000:]
    assert len(lines) == 1 and "Read-only file system" in lines[0], p.stderr[-3000:]
    assert _versions(lake) == versions


def _jvm_banner(line: str) -> bool:
    """What every local Spark start prints on stderr before Echo runs (not an error)."""
    return line.startswith(
        ("WARNING: Using incubator modules", "Setting default log level", "To adjust logging level")
    )


def test_a_storage_failure_in_a_write_becomes_one_line_naming_table_and_cause(
    tmp_path: Path,
) -> None:
    from echo.errors import LakeError
    from echo.lake.guard import writing

    with pytest.raises(LakeError) as info, writing("silver/sessions", str(tmp_path)):
        raise RuntimeError(
            "Job aborted.\n\tat ...\nCaused by: java.io.IOException: No space left on device"
        )
    assert str(info.value).splitlines() == [str(info.value)]
    assert "silver/sessions" in str(info.value) and "No space left on device" in str(info.value)
    with pytest.raises(ValueError), writing("silver/sessions", str(tmp_path)):
        raise ValueError("not a storage failure")  # other errors pass through unchanged
