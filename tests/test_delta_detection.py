"""Which Delta backend runs, and why: delta-spark where its classes are visible to the
driver (also when ``spark.jars``, ``--jars`` or ``--packages`` add them at run time) and the
session has Delta's extension and catalog; delta-rs otherwise, said in one line."""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from echo.errors import ConfigError, LakeError
from echo.lake import choose_backend, open_lake
from echo.spark import (
    DELTA_CATALOG,
    DELTA_EXTENSION,
    delta_jars_conf,
    delta_spark_available,
    jvm_class_visible,
    session_conf,
)
from tests.conftest import ROOT, skip_without_delta_spark
from tests.events import Ev
from tests.helpers import write_jsonl


@pytest.fixture
def without_delta(spark: Any) -> None:
    if delta_spark_available(spark):
        pytest.skip("the delta-spark classes are on this session's classpath")


# -- the choice and its reason -------------------------------------------------------------
def test_auto_picks_delta_rs_and_says_the_class_is_missing(spark: Any, without_delta: None) -> None:
    name, why = choose_backend(spark, "auto")
    assert name == "delta-rs"
    assert why.startswith("auto: io.delta.tables.DeltaTable is not on the driver's classpath")
    assert "\n" not in why


@pytest.mark.delta_spark
def test_auto_picks_delta_spark_where_it_can_run(spark: Any) -> None:
    skip_without_delta_spark(spark)
    name, why = choose_backend(spark, "auto")
    assert name == "delta-spark" and "io.delta.tables.DeltaTable is on the classpath" in why


def test_forcing_delta_rs_needs_no_jvm_classes(spark: Any) -> None:
    assert choose_backend(spark, "delta-rs") == ("delta-rs", "forced by --lake-backend delta-rs")


def test_forcing_delta_spark_without_the_classes_is_one_line_with_the_reason(
    spark: Any, tmp_path: Path, without_delta: None
) -> None:
    with pytest.raises(LakeError) as err:
        open_lake(spark, str(tmp_path / "lake"), "delta-spark")
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith("--lake-backend delta-spark needs the delta-spark jars")
    assert "io.delta.tables.DeltaTable" in msg and "ECHO_DELTA_JARS" in msg
    assert not (tmp_path / "lake").exists()


def test_an_unknown_backend_is_refused(spark: Any) -> None:
    with pytest.raises(LakeError, match="unknown lake backend 'delta'"):
        choose_backend(spark, "delta")


def test_open_lake_records_and_logs_the_reason(
    spark: Any, tmp_path: Path, without_delta: None, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO", logger="echo.lake")
    lake = open_lake(spark, str(tmp_path / "lake"), "auto")
    assert lake.backend_name == "delta-rs" and lake.backend_reason.startswith("auto: io.delta.tables")
    assert [r.getMessage() for r in caplog.records if r.name == "echo.lake"] == [
        f"lake backend delta-rs: {lake.backend_reason}"
    ]


def test_a_job_prints_the_backend_line_once_and_not_when_quiet(
    spark: Any, tmp_path: Path, without_delta: None, capsys: pytest.CaptureFixture[str]
) -> None:
    from echo.cli import main

    events = str(write_jsonl(tmp_path / "e.jsonl", [Ev().edit(0, 0, "a")]))
    assert main(["ingest", "--events", events, "--lake", str(tmp_path / "lake")]) == 0
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("[lake]")]
    assert lines == [
        "[lake] backend delta-rs (auto: io.delta.tables.DeltaTable is not on the driver's classpath (add the "
        "delta-spark jars: --packages io.delta:delta-spark_2.13:4.0.0, --jars, spark.jars or ECHO_DELTA_JARS))"
    ]
    assert main(["sessionize", "--lake", str(tmp_path / "lake"), "--quiet"]) == 0
    assert "[lake]" not in capsys.readouterr().err


def test_cli_forcing_delta_spark_without_the_classes_exits_2_with_one_line(
    spark: Any, tmp_path: Path, without_delta: None, capsys: pytest.CaptureFixture[str]
) -> None:
    from echo.cli import main

    events = str(write_jsonl(tmp_path / "e.jsonl", [Ev().edit(0, 0, "a")]))
    rc = main(["ingest", "--events", events, "--lake", str(tmp_path / "lake"), "--lake-backend", "delta-spark"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "needs the delta-spark jars" in err[0]
    assert not (tmp_path / "lake").exists()


# -- class visibility: jars added at run time ------------------------------------------------
def test_a_class_of_sparks_own_jars_is_visible_and_a_missing_one_is_not(spark: Any) -> None:
    assert jvm_class_visible(spark, "org.apache.spark.sql.SparkSession")
    assert not jvm_class_visible(spark, "io.delta.tables.NoSuchClass")


@pytest.fixture(scope="module")
def probe_jar(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A jar holding one class, ``echo.probe.Probe``, that no classpath has."""
    if not shutil.which("javac") or not shutil.which("jar"):
        pytest.skip("needs a JDK (javac, jar) to build the probe jar")
    d = tmp_path_factory.mktemp("probe")
    src = d / "echo" / "probe" / "Probe.java"
    src.parent.mkdir(parents=True)
    src.write_text("package echo.probe; public class Probe {}\n")
    subprocess.run(["javac", "--release", "17", str(src)], check=True, cwd=d)
    subprocess.run(["jar", "cf", "probe.jar", "echo/probe/Probe.class"], check=True, cwd=d)
    return d / "probe.jar"


CHECK = textwrap.dedent(
    """
    import sys
    from echo.spark import get_spark, jvm_class_visible
    spark = get_spark("probe", master="local[1]", conf=dict(a.split("=", 1) for a in sys.argv[1:]))
    jvm = spark.sparkContext._jvm
    try:
        jvm.java.lang.Class.forName("echo.probe.Probe")
        system = True
    except Exception:
        system = False
    print("visible", jvm_class_visible(spark, "echo.probe.Probe"), "system", system)
    spark.stop()
    """
)


def _clean_env() -> dict[str, str]:
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYSPARK_", "SPARK_", "ECHO_DELTA"))}
    env["PYTHONPATH"] = str(ROOT)
    return env


def test_a_jar_from_spark_jars_is_seen_where_the_system_class_loader_misses_it(
    probe_jar: Path, tmp_path: Path
) -> None:
    script = tmp_path / "check.py"
    script.write_text(CHECK)
    proc = subprocess.run([sys.executable, str(script), f"spark.jars={probe_jar}"], capture_output=True,
                          text=True, timeout=300, env=_clean_env())  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "visible True system False" in proc.stdout


def test_a_jar_from_spark_submit_jars_is_seen(probe_jar: Path, tmp_path: Path) -> None:
    script = tmp_path / "check.py"
    script.write_text(CHECK)
    submit = Path(sys.executable).parent / "spark-submit"
    env = _clean_env()
    env.update(PYSPARK_PYTHON=sys.executable, PYSPARK_DRIVER_PYTHON=sys.executable)
    proc = subprocess.run([str(submit), "--master", "local[1]", "--conf", "spark.ui.enabled=false",
                           "--jars", str(probe_jar), str(script)],
                          capture_output=True, text=True, timeout=300, env=env)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "visible True system False" in proc.stdout


# -- ECHO_DELTA_JARS and scoped settings --------------------------------------------------------
def test_echo_delta_jars_puts_the_jars_and_deltas_settings_on_the_session(tmp_path: Path) -> None:
    a, b = tmp_path / "delta-spark_2.13-4.0.0.jar", tmp_path / "delta-storage-4.0.0.jar"
    a.write_bytes(b"")
    b.write_bytes(b"")
    assert delta_jars_conf(f"{a}, {b}") == {
        "spark.jars": f"{a},{b}",
        "spark.sql.extensions": DELTA_EXTENSION,
        "spark.sql.catalog.spark_catalog": DELTA_CATALOG,
    }
    assert delta_jars_conf("") == {}


def test_echo_delta_jars_naming_a_missing_file_is_a_one_line_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="ECHO_DELTA_JARS: no such jar file") as err:
        delta_jars_conf(str(tmp_path / "nope.jar"))
    assert "\n" not in str(err.value)


KEY = "spark.sql.files.maxRecordsPerFile"


def test_session_conf_restores_a_setting_that_was_set(spark: Any) -> None:
    spark.conf.set(KEY, "7")
    try:
        with session_conf(spark, {KEY: "9"}):
            assert spark.conf.get(KEY) == "9"
        assert spark.conf.get(KEY) == "7"
    finally:
        spark.conf.unset(KEY)


def test_session_conf_unsets_a_setting_that_was_unset_also_on_error(spark: Any) -> None:
    spark.conf.unset(KEY)
    with pytest.raises(RuntimeError, match="boom"), session_conf(spark, {KEY: "9"}):
        raise RuntimeError("boom")
    assert KEY not in spark.conf.getAll
