"""Test helpers: building events, running stages, reading tables back with delta-rs."""

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


class Ev:
    """Small builder of contract events for tests."""

    def __init__(self, user: str = "u1", doc: str = "d1", t0: int = 1_700_000_000_000) -> None:
        self.user, self.doc, self.t = user, doc, t0
        self.version = 0
        self.n = 0

    def _base(self, etype: str, ts: int | None, version: int | None) -> dict[str, Any]:
        self.n += 1
        return {
            "event_id": f"{self.user}-{self.doc}-{self.n:05d}",
            "event_type": etype,
            "ts_ms": self.t if ts is None else ts,
            "user_id": self.user,
            "doc_id": f"{self.user}:{self.doc}",
            "doc_version": self.version if version is None else version,
            "language": "python",
        }

    def shown(self, sid: str, text: str, offset: int = 0, ts: int | None = None, model: str = "m1") -> dict[str, Any]:
        e = self._base("shown", ts, None)
        e.update(suggestion_id=sid, model_id=model, offset=offset, text=text, prefix="def f():\n", suffix="")
        return e

    def accepted(self, sid: str, text: str, offset: int = 0, ts: int | None = None) -> dict[str, Any]:
        self.version += 1
        e = self._base("accepted", ts, None)
        e.update(suggestion_id=sid, offset=offset, accepted_text=text)
        return e

    def rejected(self, sid: str, ts: int | None = None) -> dict[str, Any]:
        e = self._base("rejected", ts, None)
        e.update(suggestion_id=sid, reason="escape")
        return e

    def edit(self, offset: int, delete_len: int, insert_text: str, ts: int | None = None) -> dict[str, Any]:
        self.version += 1
        e = self._base("edit", ts, None)
        e.update(offset=offset, delete_len=delete_len, insert_text=insert_text)
        return e
