"""cluster/: the spark-submit scripts (run for real in local mode, and as dry runs), the
tuned spark-defaults.conf, and the Databricks Asset Bundle's structure."""

from __future__ import annotations

import importlib
import itertools
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from echo.cli import COMMANDS
from tests.conftest import CONTRACT_SAMPLE, ROOT

SPARK_DIR = ROOT / "cluster" / "spark"
BUNDLE_DIR = ROOT / "cluster" / "databricks"
YARN = SPARK_DIR / "submit-yarn.sh"
K8S = SPARK_DIR / "submit-k8s.sh"
EVENTS = str(CONTRACT_SAMPLE / "events.jsonl")
STAGE_ORDER = ["ingest", "sessionize", "track", "pairs", "shards"]
DELTA_SETTINGS = [
    "spark.sql.extensions=io.delta.sql.DeltaSparkSessionExtension",
    "spark.sql.catalog.spark_catalog=org.apache.spark.sql.delta.catalog.DeltaCatalog",
]


def _env(**extra: str) -> dict[str, str]:
    bindir = str(Path(sys.executable).parent)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYSPARK_", "SPARK_"))}
    env.update(PATH=bindir + os.pathsep + env.get("PATH", ""), PYTHON=sys.executable,
               SPARK_SUBMIT=str(Path(bindir) / "spark-submit"))  # fmt: skip
    env.update(extra)
    return env


def _script(
    script: Path, *args: str, timeout: int = 600, **env: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(script), *args],
        env=_env(**env),
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
    )


def _report(stdout: str) -> dict[str, Any]:
    """The job's report: the last JSON line on stdout."""
    lines = [ln for ln in stdout.splitlines() if ln.startswith("{")]
    assert lines, stdout[-2000:]
    return json.loads(lines[-1])


def _rows(lake: Path, table: str) -> int:
    from deltalake import DeltaTable

    return len(DeltaTable(str(lake / table)).to_pandas())


# -- real runs, local mode ----------------------------------------------------------------
@pytest.mark.slow  # the k8s script's single stage stays in the default run
def test_yarn_script_runs_the_whole_pipeline_in_local_mode(tmp_path: Path) -> None:
    pytest.importorskip("pyspark")
    lake = tmp_path / "lake"
    proc = _script(
        YARN,
        "run",
        "--events",
        EVENTS,
        "--lake",
        str(lake),
        "--quiet",
        MASTER="local[2]",
        DELTA="off",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = _report(proc.stdout)
    assert report["stage"] == "run"
    assert _rows(lake, "bronze/events") == report["ingest"]["kept"] > 0
    assert _rows(lake, "bronze/quarantine") == report["ingest"]["quarantined"]
    assert _rows(lake, "silver/sessions") == report["sessionize"]["sessions_written"] > 0
    assert _rows(lake, "silver/suggestions") == report["track"]["suggestions_written"] > 0
    assert _rows(lake, "gold/acceptance_metrics") > 0
    assert _rows(lake, "gold/refinement_pairs") == report["pairs"]["pairs_written"]


def test_k8s_script_runs_a_single_stage_in_local_mode(tmp_path: Path) -> None:
    pytest.importorskip("pyspark")
    lake = tmp_path / "lake"
    proc = _script(
        K8S,
        "ingest",
        "--events",
        EVENTS,
        "--lake",
        str(lake),
        "--quiet",
        MASTER="local[2]",
        DELTA="off",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = _report(proc.stdout)
    assert report["stage"] == "ingest"
    assert _rows(lake, "bronze/events") == report["kept"] > 0
    assert not (lake / "silver" / "sessions").exists()


# -- the assembled commands (dry runs: no JVM) ----------------------------------------------
def test_yarn_command_ships_the_env_archive_and_delta() -> None:
    proc = _script(YARN, "track", "--lake", "s3://b/lake", "--session-gap-s", "900", DRY_RUN="1")
    assert proc.returncode == 0, proc.stderr
    cmd = proc.stdout
    assert "--master yarn --deploy-mode cluster" in cmd
    assert re.search(r"--archives \S*echo-env\.tar\.gz\\?#environment", cmd)
    assert "spark.executorEnv.PYSPARK_PYTHON=./environment/bin/python" in cmd
    assert "--packages io.delta:delta-spark_2.13:4.0.0" in cmd
    for setting in DELTA_SETTINGS:
        assert f"--conf {setting}" in cmd
    assert f"--properties-file {SPARK_DIR}/spark-defaults.conf" in cmd
    assert cmd.rstrip().endswith(f"{ROOT}/jobs/track.py --lake s3://b/lake --session-gap-s 900")


def test_k8s_command_runs_the_job_file_inside_the_image() -> None:
    proc = _script(K8S, "pairs", "--lake", "s3://b/lake", DRY_RUN="1", K8S_API="https://k8s:6443",
                   IMAGE="reg/echo-spark:1", DELTA="jars")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    cmd = proc.stdout
    assert "--master k8s://https://k8s:6443 --deploy-mode cluster" in cmd
    assert "spark.kubernetes.container.image=reg/echo-spark:1" in cmd
    assert "--packages" not in cmd  # DELTA=jars: the image has them
    for setting in DELTA_SETTINGS:
        assert f"--conf {setting}" in cmd
    assert cmd.rstrip().endswith("local:///opt/echo/jobs/pairs.py --lake s3://b/lake")


def test_delta_off_adds_neither_packages_nor_settings() -> None:
    proc = _script(
        YARN, "ingest", "--events", "x", "--lake", "y", DRY_RUN="1", MASTER="local[2]", DELTA="off"
    )
    assert proc.returncode == 0, proc.stderr
    assert "--master local\\[2\\]" in proc.stdout or "--master local[2]" in proc.stdout
    assert "--packages" not in proc.stdout and "DeltaSparkSessionExtension" not in proc.stdout
    assert "--archives" not in proc.stdout


def test_delta_jars_puts_echo_delta_jars_on_the_command_with_deltas_settings(tmp_path: Path) -> None:
    jars = [tmp_path / "delta-spark_2.13-4.0.0.jar", tmp_path / "delta-storage-4.0.0.jar"]
    for j in jars:
        j.write_bytes(b"")
    value = ",".join(map(str, jars))
    proc = _script(YARN, "sessionize", "--lake", "y", DRY_RUN="1", MASTER="local[2]", DELTA="jars",
                   ECHO_DELTA_JARS=value)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    args = shlex.split(proc.stdout)
    assert args[args.index("--jars") + 1] == value and "--packages" not in args
    for setting in DELTA_SETTINGS:
        assert f"--conf {setting}" in proc.stdout


def test_delta_jars_naming_a_missing_jar_fails_with_one_line(tmp_path: Path) -> None:
    proc = _script(YARN, "sessionize", "--lake", "y", DRY_RUN="1", MASTER="local[2]", DELTA="jars",
                   ECHO_DELTA_JARS=str(tmp_path / "nope.jar"))  # fmt: skip
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"submit-yarn.sh: error: ECHO_DELTA_JARS: no such jar file: {tmp_path / 'nope.jar'}"
    ]


@pytest.mark.delta_spark
def test_yarn_script_runs_the_pipeline_on_delta_spark_with_local_jars(tmp_path: Path) -> None:
    jars = os.environ.get("ECHO_DELTA_JARS", "")
    if not jars:
        pytest.skip("needs ECHO_DELTA_JARS=delta-spark_2.13-4.0.0.jar,delta-storage-4.0.0.jar (docs/deploy.md)")
    lake = tmp_path / "lake"
    proc = _script(YARN, "run", "--events", EVENTS, "--lake", str(lake), MASTER="local[2]", DELTA="jars",
                   ECHO_DELTA_JARS=jars)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "[lake] backend delta-spark (auto: " in proc.stderr  # --jars seen by the detection
    assert _rows(lake, "silver/suggestions") == _report(proc.stdout)["track"]["suggestions_written"] > 0


@pytest.mark.parametrize("script", [YARN, K8S], ids=["yarn", "k8s"])
def test_unknown_stage_fails_with_one_line(script: Path) -> None:
    proc = _script(script, "nonsense", "--lake", "y", MASTER="local[2]")
    assert proc.returncode == 2
    assert "unknown stage 'nonsense'" in proc.stderr


def test_k8s_script_needs_an_image() -> None:
    proc = _script(K8S, "ingest", "--events", "x", "--lake", "y", K8S_API="https://k8s:6443")
    assert proc.returncode == 2
    assert "IMAGE" in proc.stderr


def test_scripts_offer_every_spark_job_but_train() -> None:
    usage = _script(YARN, "--help").stdout
    offered = set(usage.split("stages:")[1].splitlines()[0].split())
    jobs = {p.stem for p in (ROOT / "jobs").glob("*.py")} - {"train"}
    assert offered == jobs
    assert jobs <= set(COMMANDS)


# -- spark-defaults.conf -------------------------------------------------------------------
def _spark_defaults() -> dict[str, str]:
    conf: dict[str, str] = {}
    for line in (SPARK_DIR / "spark-defaults.conf").read_text().splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        key, value = line.split(None, 1)
        assert key.startswith("spark."), line
        assert key not in conf, f"{key} set twice"
        conf[key] = value.strip()
    return conf


def test_spark_defaults_hold_the_large_input_settings() -> None:
    conf = _spark_defaults()
    assert int(conf["spark.sql.shuffle.partitions"]) >= 200
    assert conf["spark.sql.adaptive.enabled"] == "true"
    assert conf["spark.sql.adaptive.skewJoin.enabled"] == "true"
    assert int(conf["spark.sql.execution.arrow.maxRecordsPerBatch"]) > 0
    assert conf["spark.executor.memoryOverhead"].endswith("g")
    assert conf["spark.sql.session.timeZone"] == "UTC"
    # the Delta settings belong to the scripts (DELTA=off must be able to leave them out)
    assert "spark.sql.extensions" not in conf and "spark.sql.catalog.spark_catalog" not in conf


# -- Databricks Asset Bundle ---------------------------------------------------------------
def _bundle() -> dict[str, Any]:
    root = yaml.safe_load((BUNDLE_DIR / "databricks.yml").read_text())
    for pattern in root.get("include", []):
        for path in sorted(BUNDLE_DIR.glob(pattern)):
            extra = yaml.safe_load(path.read_text())
            for section, items in extra.items():
                for kind, defs in items.items():
                    root.setdefault(section, {}).setdefault(kind, {}).update(defs)
    return root


def _tasks() -> dict[str, dict[str, Any]]:
    jobs = _bundle()["resources"]["jobs"]
    assert list(jobs) == ["echo_pipeline"]
    return {t["task_key"]: t for t in jobs["echo_pipeline"]["tasks"]}


def test_bundle_has_dev_and_prod_targets_and_defines_every_variable_it_uses() -> None:
    bundle = _bundle()
    assert {"dev", "prod"} <= set(bundle["targets"])
    assert bundle["targets"]["dev"].get("default") is True
    text = (BUNDLE_DIR / "databricks.yml").read_text() + "".join(
        p.read_text() for p in (BUNDLE_DIR / "resources").glob("*.yml")
    )
    used = set(re.findall(r"\$\{var\.([a-z_]+)\}", text))
    assert "lake_root" in used
    assert used <= set(bundle["variables"])
    for target in bundle["targets"].values():
        assert set(target.get("variables", {})) <= set(bundle["variables"])


def test_bundle_tasks_depend_on_each_other_in_stage_order() -> None:
    tasks = _tasks()
    assert set(tasks) == set(STAGE_ORDER)
    for prev, stage in itertools.pairwise(STAGE_ORDER):
        assert [d["task_key"] for d in tasks[stage]["depends_on"]] == [prev]
    assert "depends_on" not in tasks["ingest"]


def test_bundle_tasks_run_registered_commands_of_the_wheel_entry_point() -> None:
    for key, task in _tasks().items():
        wheel = task["python_wheel_task"]
        assert wheel["package_name"] == "echo_pipeline"
        assert wheel["entry_point"] == "echo-pipeline"
        params = wheel["parameters"]
        assert params[0] in COMMANDS and params[0] == key
        assert params[params.index("--lake") + 1] == "${var.lake_root}"
        assert params[params.index("--lake-backend") + 1] == "delta-spark"
        assert task["libraries"] == [{"whl": "../dist/*.whl"}]
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert 'echo-pipeline = "echo.cli:main"' in pyproject


def test_bundle_tasks_pass_only_flags_their_command_accepts(
    capsys: pytest.CaptureFixture[str],
) -> None:
    pytest.importorskip("pyspark")
    for task in _tasks().values():
        command, *args = task["python_wheel_task"]["parameters"]
        module = importlib.import_module(COMMANDS[command][0])
        with pytest.raises(SystemExit) as exc:
            module.main(["--help"])
        assert exc.value.code == 0
        accepted = set(re.findall(r"(--[a-z][a-z0-9-]*)", capsys.readouterr().out))
        flags = [a for a in args if a.startswith("--")]
        assert flags and set(flags) <= accepted, (command, set(flags) - accepted)
