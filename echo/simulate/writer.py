"""Streaming output of one shard: one file per batch, transport faults applied on the way.

Events go to the batch of their (true) time; faults move, repeat, delay or spoil them.
Every fault injected is counted in :attr:`ShardSink.counts`.
"""

from __future__ import annotations

import gzip
import io
import random
from collections import Counter
from pathlib import Path
from typing import Any, BinaryIO

from echo.simulate import faults as F

EVENT_COLUMNS = (
    "event_id",
    "event_type",
    "ts_ms",
    "user_id",
    "doc_id",
    "doc_version",
    "language",
    "client",
    "suggestion_id",
    "model_id",
    "offset",
    "text",
    "prefix",
    "suffix",
    "latency_ms",
    "accepted_text",
    "reason",
    "delete_len",
    "insert_text",
)
INT_COLUMNS = frozenset({"ts_ms", "doc_version", "offset", "latency_ms", "delete_len"})

Record = Any  # bytes (JSON Lines) or dict (Parquet)


def event_schema() -> Any:
    import pyarrow as pa

    return pa.schema([(c, pa.int64() if c in INT_COLUMNS else pa.string()) for c in EVENT_COLUMNS])


class BatchFile:
    """One output file, with a small buffer of lines held back (out-of-order delivery)."""

    def __init__(self, path: Path, fmt: str, row_group: int = 20_000) -> None:
        self.path = path
        self.fmt = fmt
        self.n_records = 0
        self.held: list[tuple[int, Record]] = []
        self.tail: list[Record] = []
        self._rows: list[Record] = []
        self._row_group = row_group
        self._fh: BinaryIO | None = None
        self._pq: Any = None
        path.parent.mkdir(parents=True, exist_ok=True)
        if fmt == "jsonl":
            self._fh = open(path, "wb", buffering=1 << 20)  # noqa: SIM115
        elif fmt == "jsonl.gz":
            raw = open(path, "wb")  # noqa: SIM115
            self._raw = raw
            self._fh = io.BufferedWriter(
                gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=6),
                1 << 20,
            )

    def write(self, rec: Record) -> None:
        self._write(rec)
        if self.held:
            still: list[tuple[int, Record]] = []
            for n, r in self.held:
                if n <= 1:
                    self._write(r)
                else:
                    still.append((n - 1, r))
            self.held = still

    def hold(self, rec: Record, lines: int) -> None:
        """Write ``rec`` after ``lines`` more records (or at close)."""
        self.held.append((lines, rec))

    def _write(self, rec: Record) -> None:
        self.n_records += 1
        if self._fh is not None:
            self._fh.write(rec)
            self._fh.write(b"\n")
            return
        self._rows.append(rec)
        if len(self._rows) >= self._row_group:
            self._flush_rows()

    def _flush_rows(self) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        if self._pq is None:
            self._pq = pq.ParquetWriter(str(self.path), event_schema(), compression="zstd")
        cols = {c: [r.get(c) for r in self._rows] for c in EVENT_COLUMNS}
        self._pq.write_table(pa.table(cols, schema=event_schema()))
        self._rows = []

    def close(self) -> None:
        for _, r in self.held:
            self._write(r)
        for r in self.tail:
            self._write(r)
        self.held, self.tail = [], []
        if self._fh is not None:
            self._fh.close()
            if self.fmt == "jsonl.gz":
                self._raw.close()
        else:
            if self._rows or self._pq is None:
                self._flush_rows()
            self._pq.close()


class ShardSink:
    """Receives a shard's clean events in time order and writes them with faults."""

    def __init__(
        self,
        out: Path,
        shard: int,
        *,
        fmt: str,
        batches: int,
        start_ms: int,
        span_ms: int,
        rates: dict[str, float],
        seed: int,
    ) -> None:
        ext = {"jsonl": "jsonl", "jsonl.gz": "jsonl.gz", "parquet": "parquet"}[fmt]
        self.parquet = fmt == "parquet"
        self.files = [
            BatchFile(out / f"batch-{b:04d}" / f"part-{shard:05d}.{ext}", fmt)
            for b in range(batches)
        ]
        self.k = batches
        self.start_ms = start_ms
        self.batch_ms = max(1, -(-span_ms // batches))
        self.rng = random.Random(f"{seed}|sink|{shard}")
        self.rates = dict(rates)
        if self.parquet:  # not representable in a typed columnar file
            self.rates["invalid_json"] = 0.0
            self.rates["wrong_type"] = 0.0
        self.bad_kinds = [k for k in ("invalid_json", *F.MAKERS) if self.rates.get(k, 0.0) > 0]
        self.bad_total = sum(self.rates[k] for k in self.bad_kinds)
        self.counts: Counter[str] = Counter()
        self.by_type: Counter[str] = Counter()
        self.clean = 0

    def _rec(self, ev: dict[str, Any]) -> Record:
        return ev if self.parquet else F.encode(ev)

    def _later(self, b: int) -> int:
        return self.rng.randint(b + 1, min(self.k - 1, b + 3))

    def emit(self, ev: dict[str, Any], true_ms: int) -> None:
        rng, rates = self.rng, self.rates
        self.clean += 1
        self.by_type[ev["event_type"]] += 1
        b = min(self.k - 1, max(0, (true_ms - self.start_ms) // self.batch_ms))
        if b < self.k - 1 and rates["late"] and rng.random() < rates["late"]:
            b = self._later(b)
            self.counts["late"] += 1
        rec = self._rec(ev)
        if rates["out_of_order"] and rng.random() < rates["out_of_order"]:
            self.files[b].hold(rec, rng.randint(2, 64))
            self.counts["out_of_order"] += 1
        else:
            self.files[b].write(rec)
        if rates["duplicate"] and rng.random() < rates["duplicate"]:
            self.counts["duplicate"] += 1
            if b < self.k - 1 and rng.random() < 0.5:
                self.files[self._later(b)].write(rec)
            else:
                self.files[b].hold(rec, rng.randint(1, 200))
        if self.bad_total and rng.random() < self.bad_total:
            self._malformed(ev, b)

    def _malformed(self, ev: dict[str, Any], b: int) -> None:
        rng = self.rng
        x = rng.random() * self.bad_total
        kind = self.bad_kinds[-1]
        for k in self.bad_kinds:
            if x < self.rates[k]:
                kind = k
                break
            x -= self.rates[k]
        self.counts[kind] += 1
        if kind == "invalid_json":
            self.files[b].write(F.invalid_json(ev, rng))
            return
        rec = F.MAKERS[kind](ev, rng)
        out = rec if self.parquet else F.encode(rec)
        if kind == "conflicting_duplicate":  # always after the original
            if b < self.k - 1:
                self.files[self._later(b)].write(out)
            else:
                self.files[b].tail.append(out)
        else:
            self.files[b].write(out)

    def close(self) -> list[int]:
        for f in self.files:
            f.close()
        return [f.n_records for f in self.files]
