"""The notebooks (Databricks source format) run locally against a lake built from the
contract sample, in this process, on the session's Spark; echo.notebook's local fallbacks."""

from __future__ import annotations

import json
import runpy
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import CONTRACT_SAMPLE, ROOT

pytest.importorskip("pyspark")
pytest.importorskip("matplotlib")

from deltalake import DeltaTable

from echo import notebook

NOTEBOOKS = ROOT / "notebooks"
ALL_NOTEBOOKS = sorted(NOTEBOOKS.glob("[0-9][0-9]_*.py"))


@pytest.fixture(scope="module")
def sample_lake(spark: object, tmp_path_factory: pytest.TempPathFactory) -> str:
    """One lake for every notebook: the contract sample through ingest..pairs."""
    from echo.jobs import ingest, pairs, sessionize, track

    lake = str(tmp_path_factory.mktemp("nb") / "lake")
    events = str(CONTRACT_SAMPLE / "events.jsonl")
    assert ingest.main(["--events", events, "--lake", lake, "--quiet"]) == 0
    for stage in (sessionize, track, pairs):
        assert stage.main(["--lake", lake, "--quiet"]) == 0
    return lake


@pytest.fixture
def run_notebook(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> Iterator[object]:
    """Run a notebook file as a script with widget values from ECHO_WIDGET_* variables;
    returns its stdout."""
    monkeypatch.setenv("ECHO_NOTEBOOK_OUT", str(tmp_path / "out"))
    monkeypatch.setenv("MPLBACKEND", "Agg")

    def run(name: str, **widgets: str) -> str:
        for key, value in widgets.items():
            monkeypatch.setenv(notebook.env_name(key), value)
        capsys.readouterr()
        runpy.run_path(str(NOTEBOOKS / name), run_name="__main__")
        return capsys.readouterr().out

    yield run


def test_every_notebook_is_in_databricks_source_format() -> None:
    assert len(ALL_NOTEBOOKS) == 4
    for path in ALL_NOTEBOOKS:
        text = path.read_text(encoding="utf-8")
        assert text.splitlines()[0] == "# Databricks notebook source", path.name
        assert text.count("# COMMAND ----------") >= 2, path.name
        assert "# MAGIC %md" in text, path.name
        assert "widget(" in text, path.name
        compile(text, str(path), "exec")


def test_explore_notebook_reports_the_lake_counts(sample_lake: str, run_notebook) -> None:
    out = run_notebook("01_explore_events_and_sessions.py", lake=sample_lake)
    events = DeltaTable(f"{sample_lake}/bronze/events").to_pandas()
    sessions = DeltaTable(f"{sample_lake}/silver/sessions").to_pandas()
    quarantine = DeltaTable(f"{sample_lake}/bronze/quarantine").to_pandas()
    assert f'"events": {len(events)}' in out
    assert f'"sessions": {len(sessions)}' in out
    assert f'"quarantined": {len(quarantine)}' in out
    assert f'"users": {events.user_id.nunique()}' in out
    for reason in quarantine.reason.unique():
        assert reason in out


def test_pairs_notebook_shows_proposal_and_final_side_by_side(
    sample_lake: str, run_notebook
) -> None:
    out = run_notebook("02_refinement_pairs.py", lake=sample_lake, outcome="refined", limit="3")
    pairs = DeltaTable(f"{sample_lake}/gold/refinement_pairs").to_pandas()
    assert f'"pairs": {len(pairs)}' in out
    refined = pairs[pairs.outcome == "refined"].sort_values(["edit_similarity", "suggestion_id"])
    assert len(refined) >= 1
    first = refined.iloc[0]
    assert f"## {first.suggestion_id} (refined" in out
    assert "proposal" in out and "final" in out
    # the ndiff part marks the final text's first line as added when it differs
    final_line = first.final_text.splitlines()[0]
    assert final_line[:50] in out


def test_pairs_notebook_says_so_when_pairs_are_absent(
    sample_lake: str, run_notebook, tmp_path: Path
) -> None:
    lake = tmp_path / "no_pairs"
    shutil.copytree(sample_lake, lake)
    shutil.rmtree(lake / "gold" / "refinement_pairs")
    out = run_notebook("02_refinement_pairs.py", lake=str(lake))
    assert "gold/refinement_pairs does not exist yet" in out
    assert "suggestions by outcome" in out


def test_metrics_notebook_draws_the_dashboard(
    sample_lake: str, run_notebook, tmp_path: Path
) -> None:
    out = run_notebook("03_acceptance_metrics.py", lake=sample_lake)
    metrics = DeltaTable(f"{sample_lake}/gold/acceptance_metrics").to_pandas()
    pngs = sorted(p.name for p in (tmp_path / "out").glob("*.png"))
    assert pngs == [
        "acceptance_rate_per_day.png",
        "outcomes_per_model.png",
        "shown_vs_accepted_per_language.png",
    ]
    assert f'"shown": {int(metrics.shown.sum())}' in out
    assert f'"accepted": {int(metrics.accepted.sum())}' in out
    assert "totals per model" in out


def test_training_notebook_reads_metrics_and_eval(run_notebook, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    rows = [
        {"step": s, "loss": 3.0 / s, "lr": 1e-3, "tokens_per_s": 1000.0 + s} for s in range(1, 6)
    ]
    (run_dir / "metrics.jsonl").write_text(
        "".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8"
    )
    (run_dir / "eval.json").write_text(
        json.dumps({"split": "val", "pairs": 7, "model_metrics": {"edit_similarity": 0.61}})
    )
    out = run_notebook("04_training_report.py", run_dir=str(run_dir))
    assert '"last_loss": 0.6' in out
    assert '"steps": 5' in out
    assert '"edit_similarity": 0.61' in out
    assert (tmp_path / "out" / "training_curves.png").is_file()
    assert "train_result.json" in out  # listed as missing


def test_training_notebook_handles_a_missing_run_dir(run_notebook, tmp_path: Path) -> None:
    out = run_notebook("04_training_report.py", run_dir=str(tmp_path / "nothing"))
    assert "no training metrics" in out
    assert "no evaluation report" in out
    assert not (tmp_path / "out" / "training_curves.png").exists()


def test_widget_reads_the_environment_else_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ECHO_WIDGET_RUN_DIR", raising=False)
    assert notebook.widget("run_dir", "d") == "d"
    monkeypatch.setenv("ECHO_WIDGET_RUN_DIR", "x")
    assert notebook.widget("run_dir", "d") == "x"


def test_side_by_side_marks_changed_lines_only() -> None:
    text = notebook.side_by_side("a = 1\nb = 2\n", "a = 1\nb = 3\n", width=10)
    lines = text.splitlines()[2:]
    assert lines[0].startswith("a = 1") and " | " in lines[0]
    assert " * " in lines[1] and lines[1].endswith("b = 3")


def test_training_report_skips_a_torn_last_line(tmp_path: Path) -> None:
    (tmp_path / "metrics.jsonl").write_text(
        '{"step": 1, "loss": 2.0}\n{"step": 2, "lo', encoding="utf-8"
    )
    report = notebook.training_report(str(tmp_path))
    assert [r["step"] for r in report["metrics"]] == [1]
    assert notebook.metrics_summary(report["metrics"])["last_loss"] == 2.0


def test_figures_leave_matplotlibs_global_backend_alone(tmp_path: Path) -> None:
    """The dashboards draw on Figure objects: no pyplot, no backend switch."""
    import subprocess
    import sys

    code = (
        "import sys, matplotlib, pandas as pd\n"
        "backend = matplotlib.rcParams._get_backend_or_none()\n"
        "from echo import notebook\n"
        "notebook.training_figure([{'step': 1, 'loss': 2.0, 'lr': 0.1, 'tokens_per_s': 5.0}])\n"
        "m = pd.DataFrame({'day': ['2024-01-01'], 'model_id': ['m'], 'language': ['py'], 'shown': [2], 'accepted': [1]})\n"
        "o = pd.DataFrame({'model_id': ['m', 'm'], 'outcome': ['kept', 'refined'], 'count': [1, 2]})\n"
        "assert len(notebook.acceptance_figures(m, o)) == 3\n"
        "print('matplotlib.pyplot' in sys.modules, matplotlib.rcParams._get_backend_or_none() == backend)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.split() == ["False", "True"]
