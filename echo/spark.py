"""Building the Spark session: the one place where a job gets its ``SparkSession``.

Under ``spark-submit`` (or on Databricks) the submit command or the cluster decides the
master and the Delta packages; here we only add settings the pipeline relies on. Run
from the CLI or the tests, a local session is built (``local[*]`` unless configured).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

#: Settings every Echo session gets (they do not change results, only make them stable).
BASE_CONF: dict[str, str] = {
    "spark.sql.session.timeZone": "UTC",
    "spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS",
    "spark.sql.execution.arrow.pyspark.enabled": "true",
    "spark.sql.adaptive.enabled": "true",
    "spark.hadoop.mapreduce.fileoutputcommitter.marksuccessfuljobs": "false",
    "spark.sql.sources.partitionOverwriteMode": "static",
    "spark.sql.legacy.timeParserPolicy": "CORRECTED",
}

#: Extra settings for local mode: small machines, quick tests.
LOCAL_CONF: dict[str, str] = {
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
    "spark.sql.shuffle.partitions": "8",
    "spark.default.parallelism": "4",
    "spark.driver.memory": "4g",
    "spark.sql.execution.arrow.maxRecordsPerBatch": "2000",
}


def _under_spark_submit() -> bool:
    return "SPARK_SUBMIT_OPTS" in os.environ or os.environ.get("SPARK_ENV_LOADED") == "1" or any(
        "pyspark-shell" in a for a in os.environ.get("PYSPARK_SUBMIT_ARGS", "").split()
    )


def get_spark(app_name: str = "echo", *, master: str = "", conf: dict[str, str] | None = None) -> SparkSession:
    """Return the active session, or build one with Echo's settings.

    ``master`` is honoured only when no master is set already (spark-submit sets one).
    """
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is not None:
        return active
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    builder = SparkSession.builder.appName(app_name)
    local = not _under_spark_submit() and not os.environ.get("DATABRICKS_RUNTIME_VERSION")
    settings = dict(BASE_CONF)
    if local:
        builder = builder.master(master or os.environ.get("ECHO_SPARK_MASTER", "local[*]"))
        settings.update(LOCAL_CONF)
        log4j = os.path.join(os.path.dirname(__file__), "log4j2.properties")
        settings["spark.driver.extraJavaOptions"] = f"-Dlog4j2.configurationFile=file:{log4j}"
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    settings.update(conf or {})
    for key, value in settings.items():
        builder = builder.config(key, value)
    from echo.logs import stderr_to_log

    with stderr_to_log():  # the JVM's start-up lines and log4j go to the command's log file
        spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel(os.environ.get("ECHO_SPARK_LOG_LEVEL", "ERROR"))
    return spark


def delta_spark_available(spark: SparkSession) -> bool:
    """True when the delta-spark JVM classes are on the classpath and the session has
    Delta's SQL extension (what ``--packages io.delta:delta-spark_2.13:4.0.0`` plus its two
    settings give, and what Databricks always has)."""
    try:
        jvm: Any = spark.sparkContext._jvm
        jvm.java.lang.Class.forName("io.delta.tables.DeltaTable")
    except Exception:
        return False
    extensions = spark.conf.get("spark.sql.extensions", "") or ""
    return "DeltaSparkSessionExtension" in extensions or bool(os.environ.get("DATABRICKS_RUNTIME_VERSION"))


@contextmanager
def spark_session(app_name: str, *, master: str = "", conf: dict[str, str] | None = None) -> Iterator[SparkSession]:
    """A job's session: reuses an active one (a notebook's, a test's, ``run``'s) and
    stops the session in ``finally`` only when this call built it."""
    from pyspark.sql import SparkSession

    owned = SparkSession.getActiveSession() is None
    spark = get_spark(app_name, master=master, conf=conf)
    try:
        yield spark
    finally:
        if owned:
            spark.stop()
