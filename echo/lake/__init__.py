"""The Delta layer: one interface (:class:`Lake`), two backends.

``open_lake(spark, root, backend="auto")`` picks delta-spark where its JVM classes are on
the classpath and delta-rs (``deltalake``) otherwise; ``--lake-backend`` forces one.
All table I/O of the project goes through here; schemas live in :mod:`echo.lake.tables`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from echo.errors import LakeError
from echo.lake.base import Lake
from echo.lake.tables import ALL_TABLES, TABLES_BY_NAME, Table

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

__all__ = ["ALL_TABLES", "TABLES_BY_NAME", "Lake", "Table", "open_lake"]


def open_lake(spark: SparkSession, root: str, backend: str = "auto") -> Lake:
    from echo.spark import delta_spark_available

    if backend == "auto":
        backend = "delta-spark" if delta_spark_available(spark) else "delta-rs"
    if backend == "delta-spark":
        if not delta_spark_available(spark):
            raise LakeError(
                "--lake-backend delta-spark needs the delta-spark jars: spark-submit "
                "--packages io.delta:delta-spark_2.13:4.0.0 with Delta's SQL extension and catalog"
            )
        from echo.lake.delta_spark import DeltaSparkLake

        return DeltaSparkLake(spark, root)
    if backend == "delta-rs":
        from echo.lake.delta_rs import DeltaRsLake

        return DeltaRsLake(spark, root)
    raise LakeError(f"unknown lake backend {backend!r} (auto, delta-rs, delta-spark)")
