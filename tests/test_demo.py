"""``echo-pipeline demo --data-only``: simulated telemetry through the whole data pipeline.

(The default ``demo`` is the experience loop; tests/test_loop.py runs it at a tiny size.)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("deltalake")


@pytest.mark.slow  # make test-slow; simulated telemetry through the whole pipeline stays in the default run (test_loop)
def test_data_only_demo_fills_every_table_and_writes_shards(
    spark: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from deltalake import DeltaTable

    from echo.cli import main

    out = tmp_path / "demo"
    rc = main(["demo", "--data-only", "--out", str(out), "--users", "3", "--days", "1",
               "--batches", "2", "--quiet"])  # fmt: skip
    assert rc == 0
    for name in ("bronze/events", "silver/sessions", "silver/suggestions", "gold/acceptance_metrics"):
        assert DeltaTable(str(out / "lake" / name)).to_pyarrow_table().num_rows > 0, name
    assert (out / "shards" / "manifest.json").is_file()
    printed = capsys.readouterr().out
    assert "Acceptance by model" in printed
    models = set(DeltaTable(str(out / "lake" / "gold" / "acceptance_metrics")).to_pandas()["model_id"])
    assert models and all(m in printed for m in models)


def test_data_only_demo_refuses_an_existing_demo_lake(spark: Any, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    from echo.cli import main

    (tmp_path / "lake").mkdir()
    assert main(["demo", "--data-only", "--out", str(tmp_path), "--quiet"]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "already holds a demo lake" in err[0]
