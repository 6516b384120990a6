"""Output a person can read: Spark's and Ray's own logging goes to a log file, a failed
run prints one line, --verbose keeps everything on the terminal."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from echo import logs

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def fresh_log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """``logs`` state of a CLI command, with the temporary directory under tmp_path."""
    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))
    monkeypatch.delenv("ECHO_VERBOSE", raising=False)
    (tmp_path / "tmp").mkdir()
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)
    saved = dict(logs._state)
    yield tmp_path
    logs._state.update(saved)


def test_failed_run_prints_exactly_one_line_and_spark_start_up_goes_to_the_log(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TMPDIR": str(tmp_path)}
    env.pop("ECHO_VERBOSE", None)
    p = subprocess.run(
        [sys.executable, "-m", "echo", "sessionize", "--lake", str(tmp_path / "not-a-lake")],
        capture_output=True, text=True, timeout=600, env=env,
    )  # fmt: skip
    assert p.returncode == 2
    assert p.stderr.splitlines() == [
        f"echo-pipeline sessionize: error: {tmp_path / 'not-a-lake'} is not an Echo lake (no _echo/lake.json); run 'ingest' first"
    ]
    (log,) = (tmp_path / "echo-logs").glob("sessionize-*.log")
    assert "# echo-pipeline sessionize --lake" in log.read_text()
    assert not (tmp_path / "not-a-lake").exists()  # no log folder made where no lake is


def test_verbose_keeps_the_logging_on_the_terminal(fresh_log: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    logs.start("track", ["--lake", str(fresh_log / "lake")])
    assert logs.current() is not None
    monkeypatch.setenv("ECHO_VERBOSE", "1")
    assert logs.current() is None


def test_log_moves_into_the_lake_once_it_is_a_lake(fresh_log: Path) -> None:
    lake = fresh_log / "lake"
    first = logs.start("ingest", ["--events", "x", "--lake", str(lake)])
    (lake / "_echo").mkdir(parents=True)
    (lake / "_echo" / "lake.json").write_text("{}")
    dest = logs.finish()
    assert dest == lake / "_echo" / "logs" / first.name and dest.read_text().startswith("# echo-pipeline ingest")
    assert not first.exists()


def test_log_stays_out_of_a_data_output_directory(fresh_log: Path) -> None:
    out = fresh_log / "events"
    first = logs.start("simulate", ["--out", str(out)])
    out.mkdir()
    assert logs.finish() == first and not (out / "logs").exists()


def test_log_moves_into_the_run_directory(fresh_log: Path) -> None:
    out = fresh_log / "run"
    logs.start("train", ["--shards", "s", "--out", str(out)])
    out.mkdir()
    dest = logs.finish()
    assert dest is not None and dest.parent == out / "logs"


def test_log_stays_in_the_temporary_directory_when_nothing_was_made(fresh_log: Path) -> None:
    first = logs.start("sessionize", ["--lake", str(fresh_log / "nolake")])
    assert logs.finish() == first and first.exists()
    assert not (fresh_log / "nolake").exists()


def test_a_child_process_started_inside_writes_its_stderr_to_the_log(fresh_log: Path) -> None:
    path = logs.start("run", [])
    with logs.stderr_to_log():
        subprocess.run([sys.executable, "-c", "import sys; sys.stderr.write('from the child\\n')"], check=True)
    assert "from the child" in path.read_text()


def test_ray_worker_lines_go_to_the_log_but_echo_progress_stays(fresh_log: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("ray")
    from ray._private.ray_logging import global_worker_stdstream_dispatcher as dispatcher

    path = logs.start("train", [])
    logs.route_ray()
    try:
        dispatcher.emit({
            "pid": 7, "actor_name": "PlacementGroupCleaner", "is_err": True,
            "lines": ["Failed to query Ray Train Controller actor state.", "[echo.train] step 1/4  loss 2.0"],
        })  # fmt: skip
        dispatcher.emit({"pid": 8, "is_err": False, "lines": ["[echo.train] step 1/4  loss 2.0"]})
    finally:
        dispatcher.remove_handler("echo_logs")
    err = capsys.readouterr().err
    assert err.splitlines() == ["[echo.train] step 1/4  loss 2.0"]
    text = path.read_text()
    assert "(PlacementGroupCleaner pid=7) Failed to query Ray Train Controller actor state." in text


def test_progress_bar_shows_the_time_left(capsys: pytest.CaptureFixture[str]) -> None:
    from echo.progress import bar

    with bar("evaluate", 4, "prompts") as b:
        b.update(2)
        b.refresh()
    err = capsys.readouterr().err
    assert "[evaluate]" in err and "2/4" in err and "<" in err  # tqdm's "elapsed<remaining"


def test_quiet_progress_bar_prints_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    from echo.progress import bar

    with bar("simulate", 3, "shards", quiet=True) as b:
        b.update(3)
    assert capsys.readouterr().err == ""


def test_training_progress_line_has_an_estimate_of_the_time_left() -> None:
    pytest.importorskip("torch")
    from echo.train.metrics import progress_line

    row = {"step": 10, "loss": 1.0, "lr": 1e-3, "tokens_per_s": 100.0, "mfu": None, "step_time_s": 2.0}
    assert progress_line(row, 40).endswith("eta 1m00s")
    assert "eta" not in progress_line({**row, "step": 40}, 40)


def test_training_progress_bar_counts_the_rate_from_the_runs_first_step() -> None:
    pytest.importorskip("torch")
    from echo.train.metrics import progress_line

    row = {"step": 12, "loss": 1.0, "lr": 1e-3, "tokens_per_s": 100.0, "mfu": None, "step_time_s": 2.0}
    line = progress_line(row, 20, elapsed=4.0, initial=10)  # resumed at 10: 2 steps in 4 s
    assert "12/20" in line and "<00:16" in line and "loss 1.0000" in line
