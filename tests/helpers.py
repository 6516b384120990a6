"""Test helpers: writing JSON Lines, running stages, reading tables back with delta-rs
(events are built by :mod:`tests.events`)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
from deltalake import DeltaTable

from echo.jobs import ingest, sessionize, track


def read_table(lake: str, name: str) -> pd.DataFrame:
    """A lake table through delta-rs (an independent Delta reader)."""
    return DeltaTable(f"{lake}/{name}").to_pandas()


def write_jsonl(path: Path, events: Iterable[dict[str, Any] | str | bytes]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as fh:
        for e in events:
            if isinstance(e, bytes):
                fh.write(e + b"\n")
            elif isinstance(e, str):
                fh.write(e.encode("utf-8") + b"\n")
            else:
                fh.write(json.dumps(e, ensure_ascii=False).encode("utf-8") + b"\n")
    return path


def run_stages(events: Sequence[str | Path], lake: str, *extra: str, stages: Sequence[str] = ("ingest", "sessionize", "track")) -> None:
    """Run the data stages' mains in-process (the same mains the CLI and spark-submit run)."""
    mains = {"ingest": ingest.main, "sessionize": sessionize.main, "track": track.main}
    for stage in stages:
        argv = ["--lake", lake, "--quiet", *extra]
        if stage == "ingest":
            argv = ["--events", *map(str, events), *argv]
        assert mains[stage](argv) == 0

