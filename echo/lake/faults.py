"""Test-only fault injection at Delta commit boundaries (crash-consistency tests).

Each lake backend calls :func:`commit_point` right before and right after every Delta
commit it makes (table creation, append, replace, merge, delete, vacuum). Unless one of
the variables below is set, that is one environment lookup per commit (a commit costs
milliseconds to seconds) and nothing else: no Spark job, table or row ever passes here.

- ``ECHO_FAULT_KILL_AFTER_COMMIT=N``: right after the process's N-th commit (1-based),
  SIGKILL the process, and the Spark JVM it launched first: the way an executor host, a
  driver pod or ``kill -9`` ends a job, with no ``finally``, no ``atexit``, no flush.
- ``ECHO_FAULT_KILL_BEFORE_COMMIT=N``: the same right before the N-th commit (its data
  files are already written, the commit is not).
- ``ECHO_FAULT_COMMIT_LOG=FILE``: append one line per commit, ``N<TAB>table<TAB>op``
  (written before the commit is attempted), so a test can enumerate the commit
  boundaries of an uninterrupted run and name the one it kills at.

Tests set them on a ``python -m echo ...`` subprocess (tests/test_crash.py); nothing in
the package sets them.
"""

from __future__ import annotations

import contextlib
import os
import signal

KILL_AFTER = "ECHO_FAULT_KILL_AFTER_COMMIT"
KILL_BEFORE = "ECHO_FAULT_KILL_BEFORE_COMMIT"
COMMIT_LOG = "ECHO_FAULT_COMMIT_LOG"

_count = 0


def commit_point(when: str, table: str, op: str) -> None:
    """Called by the backends with ``when`` = ``"before"`` / ``"after"`` each commit."""
    env = os.environ
    if KILL_AFTER not in env and KILL_BEFORE not in env and COMMIT_LOG not in env:
        return
    global _count
    if when == "before":
        _count += 1
        log = env.get(COMMIT_LOG)
        if log:
            with open(log, "a", encoding="utf-8") as fh:
                fh.write(f"{_count}\t{table}\t{op}\n")
    target = env.get(KILL_BEFORE if when == "before" else KILL_AFTER)
    if target and int(target) == _count:
        kill_now()


def kill_now() -> None:
    """SIGKILL the Spark JVM this process launched (if any), then this process."""
    with contextlib.suppress(Exception):  # best effort: the JVM exits with its parent too
        from pyspark import SparkContext

        gateway = SparkContext._gateway
        proc = getattr(gateway, "proc", None) if gateway is not None else None
        if proc is not None:
            os.kill(proc.pid, signal.SIGKILL)
    os.kill(os.getpid(), signal.SIGKILL)
