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

#: Settings Echo turns off unless the user set them (``--conf``, spark-defaults.conf).
#: PySpark 4 records, for every ``Column`` function called, the Python line that called
#: it (for error messages): ~6 calls to the JVM each (docs/benchmarks.md, "The driver's
#: fixed cost of a small run"); Spark's errors then name no Python line.
DRIVER_CONF: dict[str, str] = {
    "spark.python.sql.dataFrameDebugging.enabled": "false",
}

#: Extra settings for local mode: small machines, quick tests.
LOCAL_CONF: dict[str, str] = {
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
    "spark.sql.shuffle.partitions": "8",
    "spark.default.parallelism": "4",
    "spark.sql.execution.arrow.maxRecordsPerBatch": "2000",
}

GIB = 1024**3


def machine_memory_bytes() -> int:
    """Physical memory of this machine (psutil when installed, else ``os.sysconf``)."""
    try:
        import psutil

        return int(psutil.virtual_memory().total)
    except ImportError:
        try:
            return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
        except (ValueError, OSError, AttributeError):
            return 8 * GIB


def local_memory_conf(total_bytes: int | None = None, cores: int | None = None) -> dict[str, str]:
    """Memory settings of a local session, sized from the machine instead of a fixed heap.

    In local mode one JVM is driver and executor; Python workers (one per core at most)
    are separate processes. The heap gets a sixteenth of the memory, between 1 and 16 GiB:
    Spark spills to disk past it, so the JVM's footprint is bounded by the machine, not by
    the input (a larger heap only fills with garbage before a collection). An eighth (3 GiB
    on 24 GiB) let a run touch more of it the larger its input (peak memory 1.39x from
    1.1M to 4.4M records); a sixteenth is reached at both sizes (0.99x), and at 1.1M the two
    took the same time within noise (docs/benchmarks.md, "The heap at a sixteenth"). Python workers
    get ``spark.python.worker.memory`` (the spill threshold of Python-side aggregation):
    another eighth shared by the cores, at least 256 MiB each. Echo's own Python code
    holds one input chunk (``echo.sources.CHUNK_BYTES``) or one document's events at a
    time."""
    total = total_bytes or machine_memory_bytes()
    n = max(1, cores or os.cpu_count() or 1)
    heap_mib = int(min(max(total // 16, 1 * GIB), 16 * GIB) // 2**20)
    worker_mib = int(max(total // 8 // n, 256 * 2**20) // 2**20)
    return {
        "spark.driver.memory": f"{heap_mib}m",
        "spark.python.worker.memory": f"{worker_mib}m",
    }


def driver_conf() -> dict[str, str]:
    """:data:`DRIVER_CONF`, less the settings the user set (theirs win)."""
    return {k: v for k, v in DRIVER_CONF.items() if not _user_set(k)}


def _user_set(key: str) -> bool:
    """Whether the user already set ``key`` outside Echo: ``--driver-memory`` / ``--conf``
    in ``PYSPARK_SUBMIT_ARGS`` or ``spark-defaults.conf`` (their setting wins)."""
    args = os.environ.get("PYSPARK_SUBMIT_ARGS", "")
    if key in args or (key == "spark.driver.memory" and "--driver-memory" in args):
        return True
    conf_dirs = [os.environ.get("SPARK_CONF_DIR", "")]
    if os.environ.get("SPARK_HOME"):
        conf_dirs.append(os.path.join(os.environ["SPARK_HOME"], "conf"))
    for d in filter(None, conf_dirs):
        path = os.path.join(d, "spark-defaults.conf")
        if os.path.isfile(path):
            with open(path, encoding="utf-8", errors="replace") as fh:
                if any(line.split() and line.split()[0] == key for line in fh):
                    return True
    return False


#: Delta's two session settings (what ``--packages io.delta:delta-spark_2.13:4.0.0`` needs
#: besides the jars): the SQL extension (REORG, VACUUM, ``delta.`path``` SQL) and the
#: catalog (``DeltaTable.createIfNotExists``, ``CREATE TABLE ... USING delta``).
DELTA_EXTENSION = "io.delta.sql.DeltaSparkSessionExtension"
DELTA_CATALOG = "org.apache.spark.sql.delta.catalog.DeltaCatalog"
DELTA_CLASS = "io.delta.tables.DeltaTable"

#: ``ECHO_DELTA_JARS=delta-spark_2.13-4.0.0.jar,delta-storage-4.0.0.jar``: local jar files
#: that a locally built session (CLI, tests, notebooks) puts on ``spark.jars`` with Delta's
#: two settings, for machines that cannot resolve ``--packages`` from Maven.
DELTA_JARS_ENV = "ECHO_DELTA_JARS"


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
    settings.update(driver_conf())
    if local:
        builder = builder.master(master or os.environ.get("ECHO_SPARK_MASTER", "local[*]"))
        settings.update(LOCAL_CONF)
        for key, value in local_memory_conf().items():
            if not _user_set(key):
                settings[key] = value
        if os.environ.get("ECHO_SPARK_DRIVER_MEMORY"):
            settings["spark.driver.memory"] = os.environ["ECHO_SPARK_DRIVER_MEMORY"]
        log4j = os.path.join(os.path.dirname(__file__), "log4j2.properties")
        settings["spark.driver.extraJavaOptions"] = f"-Dlog4j2.configurationFile=file:{log4j}"
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
        settings.update(delta_jars_conf())
    settings.update(conf or {})
    for key, value in settings.items():
        builder = builder.config(key, value)
    from echo.logs import stderr_to_log

    with stderr_to_log():  # the JVM's start-up lines and log4j go to the command's log file
        spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel(os.environ.get("ECHO_SPARK_LOG_LEVEL", "ERROR"))
    return spark


def delta_jars_conf(value: str | None = None) -> dict[str, str]:
    """The session settings ``ECHO_DELTA_JARS`` asks for (empty when it is unset)."""
    from echo.errors import ConfigError

    raw = os.environ.get(DELTA_JARS_ENV, "") if value is None else value
    jars = [j.strip() for j in raw.split(",") if j.strip()]
    if not jars:
        return {}
    missing = [j for j in jars if "://" not in j and not os.path.isfile(j)]
    if missing:
        raise ConfigError(f"{DELTA_JARS_ENV}: no such jar file(s): {', '.join(missing)}")
    return {
        "spark.jars": ",".join(os.path.abspath(j) if "://" not in j else j for j in jars),
        "spark.sql.extensions": DELTA_EXTENSION,
        "spark.sql.catalog.spark_catalog": DELTA_CATALOG,
    }


def jvm_class_visible(spark: SparkSession, name: str) -> bool:
    """True when the driver JVM can load class ``name`` the way PySpark itself does.

    Jars from ``spark.jars``, ``--jars`` and ``--packages`` are added at run time to Spark's
    own class loader, which is the thread's *context* class loader (what py4j resolves
    ``jvm.io.delta...`` with) but not the JVM's system class loader: a plain
    ``Class.forName(name)`` sees only ``spark.driver.extraClassPath``.
    """
    try:
        jvm: Any = spark.sparkContext._jvm
    except Exception:  # Spark Connect: no driver JVM in this process
        return False
    if jvm is None:
        return False
    try:
        loader = jvm.java.lang.Thread.currentThread().getContextClassLoader()
        jvm.java.lang.Class.forName(name, False, loader)
    except Exception:
        return False
    return True


def delta_spark_status(spark: SparkSession) -> tuple[bool, str]:
    """Whether the delta-spark backend can run in this session, and why (one line)."""
    if os.environ.get("DATABRICKS_RUNTIME_VERSION"):
        return True, "Databricks runtime (Delta is built in)"
    if not jvm_class_visible(spark, DELTA_CLASS):
        return False, (
            f"{DELTA_CLASS} is not on the driver's classpath (add the delta-spark jars: "
            f"--packages io.delta:delta-spark_2.13:4.0.0, --jars, spark.jars or {DELTA_JARS_ENV})"
        )
    missing = [
        f"{key}={want}"
        for key, want in (
            ("spark.sql.extensions", DELTA_EXTENSION),
            ("spark.sql.catalog.spark_catalog", DELTA_CATALOG),
        )
        if want not in (spark.conf.get(key, "") or "")
    ]
    if missing:
        return False, f"the delta-spark classes are present but the session lacks {' and '.join(missing)}"
    return True, f"{DELTA_CLASS} is on the classpath and the session has Delta's extension and catalog"


def delta_spark_available(spark: SparkSession) -> bool:
    """True when the delta-spark JVM classes are visible to the driver and the session has
    Delta's SQL extension and catalog (see :func:`delta_spark_status`)."""
    return delta_spark_status(spark)[0]


@contextmanager
def session_conf(spark: SparkSession, settings: dict[str, str]) -> Iterator[None]:
    """Set runtime session settings for one block and restore them afterwards, also when
    the block fails (a setting that was unset before is unset again)."""
    current = spark.conf.getAll
    saved = {key: current.get(key) for key in settings}
    try:
        for key, value in settings.items():
            spark.conf.set(key, value)
        yield
    finally:
        for key, previous in saved.items():
            if previous is None:
                spark.conf.unset(key)
            else:
                spark.conf.set(key, previous)


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
