"""Shared fixtures: one local Spark session for the whole test run."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
CONTRACT_SAMPLE = SHARED / "examples" / "contract-sample"

os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)


@pytest.fixture(scope="session")
def spark() -> Iterator[object]:
    """``local[2]``, UI off, few shuffle partitions: the only Spark session of the run."""
    pytest.importorskip("pyspark")
    from echo.spark import get_spark

    session = get_spark(
        "echo-tests",
        master="local[2]",
        conf={"spark.sql.shuffle.partitions": "4", "spark.default.parallelism": "2"},
    )
    yield session
    session.stop()


@pytest.fixture
def lake(tmp_path: Path) -> str:
    """A fresh, empty lake root."""
    return str(tmp_path / "lake")
