"""Local sessions size their memory from the machine; the user's settings win."""

from __future__ import annotations

from echo.spark import GIB, _user_set, local_memory_conf


def test_heap_is_a_sixteenth_of_the_machine_between_1_and_16_gib():
    assert local_memory_conf(24 * GIB, 2)["spark.driver.memory"] == "1536m"
    assert local_memory_conf(64 * GIB, 2)["spark.driver.memory"] == "4096m"
    assert local_memory_conf(2 * GIB, 2)["spark.driver.memory"] == "1024m"
    assert local_memory_conf(1024 * GIB, 2)["spark.driver.memory"] == "16384m"


def test_python_workers_share_an_eighth_of_the_machine_per_core():
    assert local_memory_conf(32 * GIB, 4)["spark.python.worker.memory"] == "1024m"
    assert local_memory_conf(1 * GIB, 64)["spark.python.worker.memory"] == "256m"


def test_driver_memory_given_to_pyspark_submit_wins(monkeypatch):
    monkeypatch.setenv("PYSPARK_SUBMIT_ARGS", "--driver-memory 2g pyspark-shell")
    assert _user_set("spark.driver.memory")


def test_driver_memory_in_spark_defaults_wins(monkeypatch, tmp_path):
    (tmp_path / "spark-defaults.conf").write_text("spark.driver.memory   5g\n")
    monkeypatch.delenv("PYSPARK_SUBMIT_ARGS", raising=False)
    monkeypatch.setenv("SPARK_CONF_DIR", str(tmp_path))
    assert _user_set("spark.driver.memory")
    assert not _user_set("spark.python.worker.memory")


def test_sessions_skip_pysparks_per_call_origin_tracking(spark):
    from pyspark.errors.utils import is_debugging_enabled

    assert spark.conf.get("spark.python.sql.dataFrameDebugging.enabled") == "false"
    assert not is_debugging_enabled()  # PySpark's own check, as each Column function makes it


def test_origin_tracking_the_user_asks_for_wins(monkeypatch):
    from echo.spark import driver_conf

    monkeypatch.delenv("SPARK_CONF_DIR", raising=False)
    monkeypatch.delenv("SPARK_HOME", raising=False)
    monkeypatch.delenv("PYSPARK_SUBMIT_ARGS", raising=False)
    assert driver_conf() == {"spark.python.sql.dataFrameDebugging.enabled": "false"}
    monkeypatch.setenv("PYSPARK_SUBMIT_ARGS", "--conf spark.python.sql.dataFrameDebugging.enabled=true pyspark-shell")
    assert driver_conf() == {}
