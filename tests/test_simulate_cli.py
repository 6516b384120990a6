"""``python -m echo simulate``: files, progress on stderr, summary on stdout, errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from test_simulate_support import make_corpus

from echo.cli import main as cli_main


def test_cli_writes_batches_truth_and_summary(tmp_path: Path) -> None:
    corpus = make_corpus(tmp_path / "c")
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "-m", "echo", "simulate", "--users", "2", "--days", "1", "--seed", "5", "--out", str(out),
         "--corpus", str(corpus), "--batches", "3", "--faults", "light", "--format", "jsonl.gz"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "[simulate]" in proc.stderr and "events written" in proc.stderr
    assert "acceptance rate" in proc.stdout
    assert sorted(p.name for p in out.iterdir()) == [
        "batch-0000", "batch-0001", "batch-0002", "faults.json", "summary.json", "truth.parquet",
    ]  # fmt: skip
    summary = json.loads((out / "summary.json").read_text())
    assert summary["config"]["users"] == 2 and summary["events"]["clean"] > 0
    assert list((out / "batch-0000").glob("*.jsonl.gz"))


def test_cli_refuses_a_foreign_non_empty_directory(tmp_path: Path, capsys: object) -> None:
    (tmp_path / "keep.txt").write_text("mine")
    rc = cli_main(["simulate", "--users", "1", "--days", "1", "--out", str(tmp_path), "--quiet"])
    assert rc != 0
    assert (tmp_path / "keep.txt").read_text() == "mine"


def test_cli_rejects_a_bad_setting(tmp_path: Path) -> None:
    rc = cli_main(["simulate", "--users", "0", "--out", str(tmp_path / "o"), "--quiet"])
    assert rc == 2
