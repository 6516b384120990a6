"""Progress output for long work: one line per step on stderr, with elapsed time, and
progress bars with an estimate of the time left (:func:`bar`, tqdm) for long loops."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable
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


def bar(stage: str, total: int, unit: str, *, quiet: bool = False, items: Iterable[Any] | None = None) -> Any:
    """A progress bar with the rate and an estimate of the time left (tqdm), on stderr.

    ``with bar("evaluate", n, "pairs") as b: ... b.update(k)``, or over ``items``:
    ``for r in bar("loop", n, "rounds", items=range(n))``. Quiet: a bar that shows
    nothing. Off a terminal (a log, CI) it redraws at most every 30 s, in ASCII. Lines
    printed while a bar is shown go through :func:`say`.
    """
    from tqdm import tqdm

    tty = sys.stderr.isatty()
    return tqdm(
        items,
        total=total,
        desc=f"[{stage}]",
        unit=f" {unit}",
        file=sys.stderr,
        disable=quiet,
        mininterval=0.5 if tty else 30.0,
        ascii=not tty,
        dynamic_ncols=tty,
        leave=True,
    )


def say(line: str) -> None:
    """One progress line on stderr that leaves an active progress bar intact (tqdm.write)."""
    from tqdm import tqdm

    tqdm.write(line, file=sys.stderr)
