"""Spark's event log for the benchmarks that read job and task metrics from it."""

from __future__ import annotations

import glob
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def conf(logdir: Path) -> dict[str, str]:
    """Session settings that write an uncompressed, unrolled event log into ``logdir``."""
    return {"spark.eventLog.enabled": "true", "spark.eventLog.dir": f"file://{logdir}",
            "spark.eventLog.compress": "false", "spark.eventLog.rolling.enabled": "false"}  # fmt: skip


def events(logdir: Path) -> Iterator[dict[str, Any]]:
    """Every event of every log under ``logdir``, in order."""
    for f in sorted(glob.glob(str(logdir / "**" / "*"), recursive=True)):
        if os.path.isfile(f):
            with open(f, encoding="utf-8") as fh:
                for line in fh:
                    yield json.loads(line)
