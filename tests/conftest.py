"""Shared fixtures: one local Spark session for the whole test run."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: the shared contract folder beside the checkout (ECHO_SHARED names another, e.g. for a
#: git worktree that lives elsewhere)
SHARED = Path(os.environ.get("ECHO_SHARED") or ROOT.parent / "shared")
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


#: Both Delta backends; delta-spark's cases carry the ``delta_spark`` marker (``pytest -m
#: delta_spark`` selects them) and skip with the reason where its classes are absent. With
#: the jars: ``ECHO_DELTA_JARS=delta-spark_2.13-4.0.0.jar,delta-storage-4.0.0.jar make test``.
BACKENDS = ["delta-rs", pytest.param("delta-spark", marks=pytest.mark.delta_spark)]


def skip_without_delta_spark(spark: object) -> None:
    from echo.spark import delta_spark_status

    ok, why = delta_spark_status(spark)  # type: ignore[arg-type]
    if not ok:
        pytest.skip(
            f"delta-spark cannot run here: {why}. Run with ECHO_DELTA_JARS=delta-spark_2.13-4.0.0.jar,"
            "delta-storage-4.0.0.jar (docs/deploy.md)"
        )


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, spark: object) -> str:
    """A Delta backend name; the delta-spark case skips where it cannot run."""
    if request.param == "delta-spark":
        skip_without_delta_spark(spark)
    return str(request.param)


@pytest.fixture
def lake(tmp_path: Path) -> str:
    """A fresh, empty lake root."""
    return str(tmp_path / "lake")
