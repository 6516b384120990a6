"""Progress output for long work: one line per step on stderr, with elapsed time."""

from __future__ import annotations

import sys
import time
from typing import Any


class Progress:
    """``p = Progress("ingest"); p.step("read 3 files")`` prints ``[ingest 1.2s] read 3 files``."""

    def __init__(self, stage: str, *, quiet: bool = False) -> None:
        self.stage = stage
        self.quiet = quiet
        self.t0 = time.perf_counter()

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.t0

    def step(self, message: str, **counts: Any) -> None:
        if self.quiet:
            return
        extra = "".join(f" {k}={v:,}" if isinstance(v, int) else f" {k}={v}" for k, v in counts.items())
        print(f"[{self.stage} {self.elapsed:7.1f}s] {message}{extra}", file=sys.stderr, flush=True)
