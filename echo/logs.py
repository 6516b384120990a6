"""Where Spark's and Ray's own logging goes: a log file, so the terminal shows Echo's
progress lines and results (and a failed run exactly one line).

A command run from the CLI gets one log file (:func:`start`): first under the temporary
directory, moved at the end of the command (:func:`finish`) to ``<lake>/_echo/logs/`` or
``<out>/logs/`` (train, loop, demo) when the command's lake or run directory exists by then (a lake's root
must stay empty until ``ingest`` makes it a lake, so nothing is written there earlier).
``--verbose`` (or ``ECHO_VERBOSE=1``) keeps everything on the terminal.

- **Spark**: the JVM is started with its standard error on the log file (its start-up
  lines, log4j's console appender, the Python workers it spawns), see
  :func:`stderr_to_log` in :func:`echo.spark.get_spark`.
- **Ray**: the ``ray`` Python loggers write to the log file, and the lines workers print
  (which Ray forwards to the driver) go to the log file too, except Echo's own progress
  lines (``[echo.``), which stay on the terminal (:func:`route_ray`).

Library use (tests, notebooks) that never calls :func:`start` redirects nothing.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

#: Commands whose ``--out`` is a run directory that may hold ``logs/`` (the others'
#: ``--out`` is data with an exact layout: events, shards, a report file).
RUN_DIR_COMMANDS = ("train", "loop", "demo")

#: Lines of Ray workers that stay on the terminal (Echo's own progress lines).
KEEP_MARKERS = ("[echo.",)

_state: dict[str, Any] = {"path": None, "targets": ()}


def verbose() -> bool:
    return os.environ.get("ECHO_VERBOSE", "") not in ("", "0")


def current() -> Path | None:
    """The log file of this process's command, or None (not started, or ``--verbose``)."""
    path = _state["path"]
    return None if path is None or verbose() else Path(path)


def _option(argv: Sequence[str], name: str) -> str | None:
    for i, arg in enumerate(argv):
        if arg == name and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    return None


def start(command: str, argv: Sequence[str]) -> Path:
    """Open this command's log file (in the temporary directory until :func:`finish`)."""
    folder = Path(tempfile.gettempdir()) / "echo-logs"
    folder.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    path = folder / f"{command}-{stamp}-{os.getpid()}.log"
    path.write_text(f"# echo-pipeline {command} {' '.join(argv)}\n", encoding="utf-8")
    targets = []
    lake = _option(argv, "--lake")
    if lake and "://" not in lake.replace("file://", "", 1):
        root = Path(lake.replace("file://", "", 1))
        targets.append((root / "_echo" / "lake.json", root / "_echo" / "logs"))
    out = _option(argv, "--out")
    if out and "://" not in out and command in RUN_DIR_COMMANDS:
        targets.append((Path(out), Path(out) / "logs"))
    _state.update(path=str(path), targets=tuple(targets))
    return path


def finish() -> Path | None:
    """Move the log file next to the command's results when their place exists; returns
    where the log is (None when no log was started)."""
    path = _state["path"]
    if path is None:
        return None
    for must_exist, folder in _state["targets"]:
        if must_exist.exists():
            try:
                folder.mkdir(parents=True, exist_ok=True)
                dest = folder / Path(path).name
                shutil.move(path, dest)
            except OSError:
                break
            _state["path"] = str(dest)
            return dest
    return Path(path)


@contextmanager
def stderr_to_log() -> Iterator[None]:
    """While the block runs, file descriptor 2 is the log file: processes started inside
    (Spark's JVM) keep it as their standard error. Does nothing without a log."""
    path = current()
    if path is None:
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.dup2(fd, 2)
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        os.close(fd)


def _file_handler(path: Path) -> logging.Handler:
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    return handler


def quiet_ray_loggers() -> None:
    """Send the ``ray`` Python loggers of this process to the log file (call before
    ``ray.init``, and again after: Ray adds its stream handler while it starts)."""
    path = current()
    if path is None:
        return
    logger = logging.getLogger("ray")
    for h in list(logger.handlers):
        if isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler):
            logger.removeHandler(h)
    if not any(isinstance(h, logging.FileHandler) for h in logger.handlers):
        logger.addHandler(_file_handler(path))
    logger.propagate = False
    try:
        from ray.data import DataContext

        DataContext.get_current().enable_progress_bars = False
    except ImportError:
        pass


def route_ray() -> None:
    """After ``ray.init``: the worker output Ray forwards to the driver goes to the log
    file, but for Echo's own progress lines, which stay on the terminal."""
    path = current()
    if path is None:
        return
    quiet_ray_loggers()
    try:
        from ray._private.ray_logging import global_worker_stdstream_dispatcher as dispatcher
    except ImportError:  # another Ray layout: leave Ray's own printing as it is
        return
    dispatcher.remove_handler("ray_print_logs")
    dispatcher.remove_handler("echo_logs")

    last: list[str] = [""]

    def handle(data: dict[str, Any]) -> None:
        who = data.get("actor_name") or data.get("task_name") or ""
        prefix = f"({who} pid={data.get('pid')}) "
        with open(current() or path, "a", encoding="utf-8") as fh:  # finish() may have moved it
            for line in data.get("lines", []):
                fh.write(prefix + line + "\n")
        for line in data.get("lines", []):
            # Ray Train's patched print may hand a line over twice: print it once
            if any(m in line for m in KEEP_MARKERS) and line != last[0]:
                last[0] = line
                print(line, file=sys.stderr, flush=True)

    dispatcher.add_handler("echo_logs", handle)
