"""Crash consistency: ``python -m echo run`` killed with SIGKILL (the driver and its Spark
JVM together) at a Delta commit boundary, or at a random moment, then run again over the
same input, leaves every table as an uninterrupted run would, and reports honest counts.

The kill is real: a subprocess, ended by the test-only hook of :mod:`echo.lake.faults`
(``ECHO_FAULT_KILL_{BEFORE,AFTER}_COMMIT=N``) or by ``killpg`` from here. The boundaries
are those of an uninterrupted run, enumerated with ``ECHO_FAULT_COMMIT_LOG``. Reruns and
baselines run in-process (the shared session), which saves a JVM start each.

What "as an uninterrupted run would" means: an ingest run is published by its run record
(its last commit). Killed before that, the rerun *is* run 1 and the lake must equal one
clean run. Killed after it, the rerun is a second ingest of the same input, which the
contract counts as all duplicates; the lake must then equal a clean run followed by the
same run again. Either way the data tables are the same.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from echo.lake import faults
from echo.lake.tables import ALL_TABLES, INGEST_RUNS, STAGE_STATE
from tests.conftest import CONTRACT_SAMPLE, ROOT

EVENTS_FILE = CONTRACT_SAMPLE / "events.jsonl"  # every contract rule: quarantine, duplicates, pairs
CLI_TIMEOUT_S = 1800  # a loaded 2-core CI machine

#: Columns left out of the comparison: each legitimately differs between a run that was
#: killed and redone and one that was not, without being data.
VOLATILE: dict[str, set[str]] = {
    # the wall-clock time of the ingest run that wrote the row
    "bronze/events": {"ingested_at"},
    # the same, and its UTC date (the partition column derived from it)
    "bronze/quarantine": {"ingested_at", "ingest_date"},
    # wall-clock start and end of the run
    "bronze/ingest_runs": {"started_at", "finished_at"},
    # the Delta version of silver/suggestions the pair was built from: lineage that counts
    # commits, and a killed run made commits an uninterrupted one did not
    "gold/refinement_pairs": {"source_version"},
    "gold/feedback": {"source_version"},  # the same lineage
    # updated_at: wall clock; detail: diagnostics of the stage's last execution (Delta
    # versions, how many users it recomputed: after a kill it redid work). Compared:
    # the stage, its watermark and the pairs settings hash (config_sha) from detail
    "_echo/stage_state": {"updated_at", "detail"},
    "_echo/forgotten_users": {"forgotten_at"},
    # per-run incremental state, labelled with the run that recorded it: a stage that ran
    # after a killed run records the same rows under the number of the run it caught up to
    "_echo/session_changes": {"run_no"},
    "_echo/doc_days": {"run_no"},
    "_echo/track_state": {"run_no"},
    "_echo/suggestion_changes": {"run_no"},
}
#: the counts an ingest run reports (CONTRACT.md 1.2)
COUNTS = ("records_read", "kept", "duplicates", "quarantined", "quarantined_by_reason", "forgotten")


def snapshot(lake: Path) -> dict[str, list[str] | None]:
    """Every table (None: not created), as sorted rows without the volatile columns."""
    from deltalake import DeltaTable

    out: dict[str, list[str] | None] = {}
    for table in ALL_TABLES:
        path = lake / table.name
        if not (path / "_delta_log").is_dir():
            out[table.name] = None
            continue
        rows = DeltaTable(str(path)).to_pyarrow_table().to_pylist()
        for r in rows:
            if table is STAGE_STATE:
                r["config_sha"] = json.loads(r["detail"] or "{}").get("config_sha")
            if table is INGEST_RUNS:  # the resolved config names the lake: the tests compare two
                r["config"] = {k: v for k, v in json.loads(r["config"]).items() if k != "lake"}
            for c in VOLATILE.get(table.name, ()):
                r.pop(c, None)
        out[table.name] = sorted(json.dumps(r, sort_keys=True, default=str) for r in rows)
    return out


def published_runs(lake: Path) -> int:
    from deltalake import DeltaTable

    path = lake / INGEST_RUNS.name
    if not (path / "_delta_log").is_dir():
        return 0
    return int(DeltaTable(str(path)).to_pyarrow_table().num_rows)


def counts(report: dict[str, Any]) -> dict[str, Any]:
    return {k: report["ingest"][k] for k in COUNTS}


def cli(
    lake: Path, env: dict[str, str], *, kill_when: Any = None
) -> subprocess.CompletedProcess[str]:
    """``python -m echo run`` over the input, in its own process group; ``kill_when(proc)``
    (optional) runs while it does. Whatever is left of the group is killed at the end."""
    cmd = [
        sys.executable,
        "-m",
        "echo",
        "run",
        "--events",
        str(EVENTS_FILE),
        "--lake",
        str(lake),
        "--quiet",
    ]
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), **env}
    proc = subprocess.Popen(cmd, env=full_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)  # fmt: skip
    try:
        if kill_when is not None:
            kill_when(proc)
        out, err = proc.communicate(timeout=CLI_TIMEOUT_S)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # stragglers (Python workers), if any
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def rerun(lake: Path, report: Path) -> dict[str, Any]:
    """The next ``run`` over the same input, in-process (the same ``main`` as the CLI)."""
    from echo.jobs import run

    assert (
        run.main(
            ["--events", str(EVENTS_FILE), "--lake", str(lake), "--quiet", "--report", str(report)]
        )
        == 0
    )
    return dict(json.loads(report.read_text()))


@dataclass
class Clean:
    commits: list[tuple[str, str]]  # (table, op) of each commit of an uninterrupted run
    once: dict[str, Any]  # snapshot after one uninterrupted run
    once_report: dict[str, Any]
    twice: dict[str, Any]  # ... and after the same run again
    twice_report: dict[str, Any]

    def boundary(self, table: str, op: str) -> int:
        return 1 + self.commits.index((table, op))


@pytest.fixture(scope="module")
def clean(spark: Any, tmp_path_factory: pytest.TempPathFactory) -> Clean:
    base = tmp_path_factory.mktemp("clean")
    log = base / "commits.log"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(faults.COMMIT_LOG, str(log))
        mp.setattr(faults, "_count", 0)
        once_report = rerun(base / "once", base / "r1.json")
    commits = [tuple(line.split("\t")[1:3]) for line in log.read_text().splitlines()]
    once = snapshot(base / "once")
    shutil.copytree(base / "once", base / "twice")
    twice_report = rerun(base / "twice", base / "r2.json")
    assert counts(once_report)["kept"] > 0 and counts(once_report)["quarantined"] > 0
    assert once["gold/refinement_pairs"], "the input must reach every table"
    return Clean(
        [(t, o) for t, o in commits], once, once_report, snapshot(base / "twice"), twice_report
    )


def check_recovery(
    lake: Path, killed: subprocess.CompletedProcess[str], clean: Clean, tmp: Path
) -> None:
    """After a kill: the next run leaves every table as an uninterrupted run would."""
    published = published_runs(lake) > 0
    left = snapshot(lake)
    leftovers = not published and bool(left["bronze/events"] or left["bronze/quarantine"])
    report = rerun(lake, tmp / "report.json")
    expected, expected_report = (
        (clean.twice, clean.twice_report) if published else (clean.once, clean.once_report)
    )
    got = snapshot(lake)
    for name in expected:
        assert got[name] == expected[name], f"{name} differs (killed: rc={killed.returncode})"
    assert counts(report) == counts(expected_report)  # honest counts, as if never interrupted
    # the rerun says when it redid a run the kill had left half-written
    assert ("interrupted_run_redone" in report["ingest"]) == leftovers


def kill_at(lake: Path, when: str, n: int) -> subprocess.CompletedProcess[str]:
    var = faults.KILL_BEFORE if when == "before" else faults.KILL_AFTER
    killed = cli(lake, {var: str(n)})
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    return killed


#: a representative subset, named by the commit they kill at; the default run keeps the
#: mid-stage one (make test-slow runs the others, every boundary and the random kills)
BOUNDARIES = [
    # bronze/quarantine committed, bronze/events not: an unpublished, half-written run
    pytest.param("after", "bronze/quarantine", "append", marks=pytest.mark.slow,
                 id="after-bronze/quarantine-append"),
    # the ingest run published, no stage has run: the rerun is a re-ingest
    pytest.param("after", "bronze/ingest_runs", "append", marks=pytest.mark.slow,
                 id="after-bronze/ingest_runs-append"),
    # gold/acceptance_metrics committed, silver/suggestions staged but not committed
    pytest.param("before", "silver/suggestions", "overwrite", id="before-silver/suggestions-overwrite"),
    # the first row written by the driver itself (ingest's writing marker) not committed
    pytest.param("before", "_echo/stage_state", "overwrite", marks=pytest.mark.slow,
                 id="before-_echo/stage_state-overwrite"),
]  # fmt: skip


@pytest.mark.parametrize(("when", "table", "op"), BOUNDARIES)
def test_run_killed_at_a_commit_boundary_then_rerun_equals_an_uninterrupted_run(
    clean: Clean, tmp_path: Path, when: str, table: str, op: str
) -> None:
    lake = tmp_path / "lake"
    killed = kill_at(lake, when, clean.boundary(table, op))
    check_recovery(lake, killed, clean, tmp_path)


@pytest.mark.slow
def test_run_killed_at_every_commit_boundary_then_rerun_equals_an_uninterrupted_run(
    clean: Clean, tmp_path: Path
) -> None:
    failures = []
    for n in range(1, len(clean.commits) + 1):
        # before a table's creation is the same lake as after the commit preceding it
        # (a creation stages no data files), so only the other commits are killed before
        for when in ("after",) if clean.commits[n - 1][1] == "create" else ("before", "after"):
            trial = tmp_path / f"{when}-{n}"
            trial.mkdir()
            try:
                check_recovery(trial / "lake", kill_at(trial / "lake", when, n), clean, trial)
            except AssertionError as exc:
                failures.append(f"{when} commit {n} {clean.commits[n - 1]}: {str(exc)[:300]}")
    assert not failures, "\n".join(failures)


def _kill_at_random(rng: random.Random, n_commits: int, log: Path) -> Any:
    """A killer that waits for a random commit to start, then a random 0-3 s more (inside
    a Spark job, a file move, a commit), then SIGKILLs the whole process group."""
    k, delay = rng.randint(1, n_commits), rng.uniform(0.0, 3.0)

    def kill(proc: subprocess.Popen[str]) -> None:
        deadline = time.monotonic() + CLI_TIMEOUT_S
        while proc.poll() is None and time.monotonic() < deadline:
            if log.exists() and len(log.read_text().splitlines()) >= k:
                time.sleep(delay)
                os.killpg(proc.pid, signal.SIGKILL)
                return
            time.sleep(0.05)

    return kill


@pytest.mark.slow  # the killed-at-a-commit case stays in the default run; make test-slow runs these
@pytest.mark.parametrize("trial", [0, 1, 2])
def test_run_killed_at_a_random_moment_then_rerun_equals_an_uninterrupted_run(
    clean: Clean, tmp_path: Path, trial: int
) -> None:
    rng = random.Random(1500 + trial)
    log = tmp_path / "commits.log"
    lake = tmp_path / "lake"
    killed = cli(
        lake, {faults.COMMIT_LOG: str(log)}, kill_when=_kill_at_random(rng, len(clean.commits), log)
    )
    assert killed.returncode in (-signal.SIGKILL, 0), killed.stderr[-3000:]
    check_recovery(lake, killed, clean, tmp_path)
