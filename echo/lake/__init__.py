"""The Delta layer: one interface (:class:`Lake`), two backends.

``open_lake(spark, root, backend="auto")`` picks delta-spark where its JVM classes are
visible to the driver (``--packages``, ``--jars``, ``spark.jars``, ``ECHO_DELTA_JARS``,
Databricks) and the session has Delta's extension and catalog, and delta-rs
(``deltalake``) otherwise; ``--lake-backend`` forces one. Jobs print which one and why.
All table I/O of the project goes through here; schemas live in :mod:`echo.lake.tables`.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from echo.errors import LakeError
from echo.lake.base import Lake
from echo.lake.tables import ALL_TABLES, TABLES_BY_NAME, Table

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

__all__ = ["ALL_TABLES", "BACKENDS", "TABLES_BY_NAME", "Lake", "Table", "choose_backend", "open_lake"]


BACKENDS = ("auto", "delta-rs", "delta-spark")

_log = logging.getLogger("echo.lake")


def choose_backend(spark: SparkSession, backend: str = "auto") -> tuple[str, str]:
    """``(backend, why)``: the backend ``open_lake`` uses and a one-line reason. Forcing
    delta-spark where it cannot run is a one-line :class:`LakeError`."""
    from echo.spark import delta_spark_status

    if backend not in BACKENDS:
        raise LakeError(f"unknown lake backend {backend!r} (auto, delta-rs, delta-spark)")
    if backend == "delta-rs":
        return backend, "forced by --lake-backend delta-rs"
    ok, why = delta_spark_status(spark)
    if backend == "delta-spark":
        if not ok:
            raise LakeError(f"--lake-backend delta-spark needs the delta-spark jars and Delta's settings: {why}")
        return backend, f"forced by --lake-backend delta-spark ({why})"
    return ("delta-spark", f"auto: {why}") if ok else ("delta-rs", f"auto: {why}")


def open_lake(spark: SparkSession, root: str, backend: str = "auto") -> Lake:
    """The lake at ``root`` on the chosen backend; ``lake.backend_reason`` says why that
    backend (also logged on the ``echo.lake`` logger)."""
    name, why = choose_backend(spark, backend)
    lake: Lake
    if name == "delta-spark":
        from echo.lake.delta_spark import DeltaSparkLake

        lake = DeltaSparkLake(spark, root)
    else:
        from echo.lake.delta_rs import DeltaRsLake

        lake = DeltaRsLake(spark, root)
    lake.backend_reason = why
    _log.info("lake backend %s: %s", name, why)
    return lake
