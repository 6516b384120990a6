"""A lake root given as a ``file:///`` URI through the whole run (every local spelling is
the same lake: tests/test_lake_paths.py), and the progress lines of the long stages."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.conftest import CONTRACT_SAMPLE

pytest.importorskip("deltalake")


def test_run_on_a_file_uri_lake_writes_delta_tables_and_shows_progress(
    spark: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from deltalake import DeltaTable

    from echo.cli import main

    root = tmp_path / "lake"
    uri = root.as_uri()  # file:///...
    assert main(["run", "--events", str(CONTRACT_SAMPLE / "events.jsonl"), "--lake", uri]) == 0
    for name in ("bronze/events", "silver/sessions", "silver/suggestions", "gold/acceptance_metrics"):
        assert DeltaTable(str(root / name)).to_pyarrow_table().num_rows > 0, name
    err = capsys.readouterr().err
    for stage in ("ingest", "sessionize", "track", "pairs"):
        assert f"[{stage}" in err, stage
    assert main(["sessionize", "--lake", uri, "--quiet"]) == 0  # a second run finds the lake by URI
