"""Reading telemetry input files in Spark tasks.

Inputs are JSON Lines (``*.jsonl``, ``*.jsonl.gz``, ``*.json``) or Parquet files, given as
files or directories (searched recursively, in name order), local or on an object store.
Every record gets an ingestion-order key ``(path_idx, pos)``: the position of its path
on the command line, then its byte offset (JSONL) or row number (Parquet). That key
decides which of two conflicting records came "first" (CONTRACT.md 1.2).

The files are read by Spark tasks, not by the driver: the driver only lists files and
cuts large plain-text files into byte ranges (a line belongs to the range holding its
first byte, as in Hadoop's line reader). Each task validates its records as it reads.

An input that cannot be read (a corrupt ``.gz`` or Parquet file, a file that vanished)
is an :class:`InputError` naming the file, and nothing is written. :func:`list_inputs`
probes each file on the driver (gzip header, Parquet footer), so most such files fail
before any table is touched; what only shows while reading (a truncated ``.gz``) comes
back from the task as one ``READ_ERROR`` row, never as a failed Spark task, and the
ingest job refuses the run before it commits anything.
"""

from __future__ import annotations

import gzip
import io
import os
import zlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from echo.errors import InputError
from echo.stages.validate import (
    EVENT_COLUMNS,
    INVALID_JSON,
    Verdict,
    parquet_row_identity,
    sha256_hex,
    validate_json_line,
    validate_object,
)

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

JSONL_SUFFIXES = (".jsonl", ".jsonl.gz", ".json", ".json.gz", ".ndjson", ".ndjson.gz")
PARQUET_SUFFIXES = (".parquet",)
SPLIT_BYTES = 128 * 1024 * 1024  # plain JSONL files larger than this are read in ranges
#: ``q_reason`` of the row a read task yields for an input it cannot read: not a
#: quarantine reason (the job stops the run on it), so never written to a table
READ_ERROR = "_unreadable_input"


@dataclass(frozen=True)
class InputFile:
    path_idx: int  # order of the file among all inputs (command line, then name order)
    uri: str
    fmt: str  # "jsonl" | "jsonl.gz" | "parquet"
    size: int
    row_groups: int = -1  # Parquet: from the footer read by the probe; -1 = not read yet
    mtime_ns: int = -1  # modification time when listed (-1: the store gives none)


@dataclass(frozen=True)
class ReadTask:
    file: InputFile
    start: int  # byte offset (jsonl) or row group (parquet)
    end: int  # exclusive; -1 = to the end


def _fs(uri: str) -> tuple[Any, str]:
    import pyarrow.fs as pafs

    if "://" not in uri or uri.startswith("file://"):
        return pafs.LocalFileSystem(), os.path.abspath(uri.removeprefix("file://"))
    return pafs.FileSystem.from_uri(uri)


def _format_of(name: str) -> str | None:
    low = name.lower()
    if low.endswith(PARQUET_SUFFIXES):
        return "parquet"
    if low.endswith(JSONL_SUFFIXES):
        return "jsonl.gz" if low.endswith(".gz") else "jsonl"
    return None


def list_inputs(paths: Sequence[str], *, probe: bool = True) -> list[InputFile]:
    """Expand the command line's paths into input files, in ingestion order.

    A missing path, an unreadable one, or a directory with no input files is an
    :class:`InputError` (one line, nothing written). With ``probe``, each file is also
    opened: a ``.gz`` must start as gzip, a Parquet file must have a readable footer."""
    import pyarrow.fs as pafs

    if not paths:
        raise InputError("no input given: pass --events PATH [PATH...]")
    files: list[InputFile] = []
    seen: set[str] = set()
    for given in paths:
        try:
            fs, p = _fs(given)
            info = fs.get_file_info(p)
        except (OSError, ValueError) as exc:
            raise InputError(f"cannot read input {given}: {exc}") from None
        if info.type == pafs.FileType.NotFound:
            raise InputError(f"input not found: {given}")
        if info.type == pafs.FileType.Directory:
            try:
                found = fs.get_file_info(pafs.FileSelector(p, recursive=True))
            except OSError as exc:
                raise InputError(f"cannot list input directory {given}: {exc}") from None
            entries = sorted(
                (f for f in found if f.type == pafs.FileType.File and _format_of(f.base_name)),
                key=lambda f: f.path,
            )
            if not entries:
                raise InputError(f"no input files (*.jsonl, *.jsonl.gz, *.parquet) under {given}")
        else:
            if _format_of(info.base_name) is None:
                raise InputError(f"unsupported input file type: {given} (expected .jsonl, .jsonl.gz or .parquet)")
            entries = [info]
        prefix = "" if ("://" not in given or given.startswith("file://")) else given.split("://")[0] + "://"
        for f in entries:
            uri = prefix + f.path if prefix and "://" not in f.path else f.path
            if uri in seen:
                continue  # the same file named twice is read once
            seen.add(uri)
            if not os.access(uri, os.R_OK) and not prefix:
                raise InputError(f"input not readable: {uri}")
            mtime = f.mtime_ns if f.mtime_ns is not None else -1
            files.append(InputFile(len(files), uri, str(_format_of(f.base_name)), int(f.size or 0), mtime_ns=mtime))
    return [_probe(f) for f in files] if probe else files


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else type(exc).__name__


def changed_inputs(files: Sequence[InputFile]) -> list[str]:
    """The inputs that are no longer what :func:`list_inputs` saw (gone, another size or
    modification time), each as ``"PATH (what changed)"``. Ingest checks this after
    reading and again before it publishes a run: a file written to, replaced or deleted
    while it was read is refused rather than half ingested."""
    import pyarrow.fs as pafs

    out: list[str] = []
    for f in files:
        try:
            fs, p = _fs(f.uri)
            info = fs.get_file_info(p)
        except (OSError, ValueError) as exc:
            out.append(f"{f.uri} (cannot stat: {_first_line(exc)})")
            continue
        if info.type != pafs.FileType.File:
            out.append(f"{f.uri} (vanished)")
        elif int(info.size or 0) != f.size:
            out.append(f"{f.uri} (size {f.size} -> {info.size})")
        elif f.mtime_ns >= 0 and info.mtime_ns is not None and info.mtime_ns != f.mtime_ns:
            out.append(f"{f.uri} (modified)")
    return out


def _read_errors() -> tuple[type[BaseException], ...]:
    """What reading a file can raise (not what validating its records can)."""
    import pyarrow as pa

    return (OSError, EOFError, zlib.error, pa.ArrowException)


def _parquet_row_groups(f: InputFile) -> int:
    import pyarrow.parquet as pq

    fs, p = _fs(f.uri)
    try:
        with fs.open_input_file(p) as fh:
            return int(pq.ParquetFile(fh).metadata.num_row_groups)
    except _read_errors() as exc:
        raise InputError(f"cannot read Parquet input {f.uri}: {_first_line(exc)}") from None


def _probe(f: InputFile) -> InputFile:
    """Open the file and read its start (gzip: its header and first block; Parquet: its
    footer), so that a file that is not what its name says fails before any table."""
    if f.fmt == "parquet":
        return InputFile(f.path_idx, f.uri, f.fmt, f.size, _parquet_row_groups(f), f.mtime_ns)
    fs, p = _fs(f.uri)
    try:
        with fs.open_input_file(p) as native:
            if f.fmt == "jsonl.gz":
                with gzip.GzipFile(fileobj=io.BufferedReader(_RawAdapter(native))) as gz:
                    gz.read(1)
            else:
                native.read(1)
    except _read_errors() as exc:
        raise InputError(f"cannot read input {f.uri}: {_first_line(exc)}") from None
    return f


def plan_tasks(files: Sequence[InputFile], split_bytes: int = SPLIT_BYTES) -> list[ReadTask]:
    """Cut inputs into read tasks: byte ranges of large plain files, row groups of Parquet."""
    tasks: list[ReadTask] = []
    for f in files:
        if f.fmt == "jsonl" and f.size > split_bytes:
            for start in range(0, f.size, split_bytes):
                tasks.append(ReadTask(f, start, min(start + split_bytes, f.size)))
        elif f.fmt == "parquet":
            groups = f.row_groups if f.row_groups >= 0 else _parquet_row_groups(f)
            tasks.extend(ReadTask(f, g, g + 1) for g in range(max(groups, 1)))
        else:
            tasks.append(ReadTask(f, 0, -1))
    return tasks


# -- executed in Spark tasks ---------------------------------------------------------------

RecordRow = tuple[Any, ...]


def _row(task: ReadTask, pos: int, line_no: int | None, raw: bytes | None, raw_text: str | None, v: Verdict) -> RecordRow:
    # a refused record keeps its user id (when it has one) so that ingest can tell a
    # forgotten user's records apart; the event columns are otherwise empty
    ev = v.event or {"user_id": v.user_id}
    return (
        task.file.uri,
        task.file.path_idx,
        pos,
        line_no,
        raw,
        raw_text,
        v.reason,
        v.detail,
        v.event_id,
        v.content_hash,
        *[ev.get(c) for c in EVENT_COLUMNS],
    )


class _RawAdapter(io.RawIOBase):
    """A pyarrow file as a Python raw stream (so io.BufferedReader gives readline)."""

    def __init__(self, native: Any) -> None:
        self._f = native

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = 0) -> int:
        return int(self._f.seek(offset, whence))

    def tell(self) -> int:
        return int(self._f.tell())

    def readinto(self, b: Any) -> int:
        data = self._f.read(len(b))
        n = len(data)
        b[:n] = data
        return n


def _iter_lines(task: ReadTask) -> Iterator[tuple[int, int | None, bytes]]:
    """(byte offset, 1-based line number or None, line without the newline)."""
    fs, p = _fs(task.file.uri)
    with fs.open_input_file(p) as native:
        fh: Any = io.BufferedReader(_RawAdapter(native), buffer_size=1 << 20)
        if task.file.fmt == "jsonl.gz":
            fh = io.BufferedReader(gzip.GzipFile(fileobj=fh), buffer_size=1 << 20)
        pos = task.start
        line_no: int | None = 1
        if task.start > 0:
            fh.seek(task.start - 1)
            skipped = fh.readline()  # the rest of a line that began in the previous range
            pos = task.start - 1 + len(skipped)
            line_no = None  # unknown inside a range; (path_idx, pos) still orders records
        end = task.end if task.end >= 0 else None
        while end is None or pos < end:
            line = fh.readline()
            if not line:
                break
            start = pos
            pos += len(line)
            yield start, line_no, line.rstrip(b"\n").rstrip(b"\r")
            if line_no is not None:
                line_no += 1


def _read_error_row(task: ReadTask, pos: int, exc: BaseException) -> RecordRow:
    """The row that tells the driver this task could not read its input (``READ_ERROR``)."""
    message = f"cannot read input {task.file.uri}: {_first_line(exc)}"
    identity = sha256_hex(
        f"{READ_ERROR}\n{task.file.uri}\n{task.start}\n{message}".encode("utf-8", "replace")
    )
    return _row(task, pos, None, b"", None, Verdict(READ_ERROR, message, None, identity, None))


def read_task(task: ReadTask, max_text_bytes: int) -> Iterator[RecordRow]:
    """Read and validate the records of one task. Blank lines are not records.

    A read error ends the task with one ``READ_ERROR`` row (after the records read so
    far) rather than failing it: the error is the input's, retrying cannot help."""
    errors = _read_errors()
    if task.file.fmt == "parquet":
        yield from _read_parquet(task, max_text_bytes, errors)
        return
    lines = _iter_lines(task)
    pos = task.start
    while True:
        try:
            pos, line_no, line = next(lines)
        except StopIteration:
            return
        except errors as exc:
            yield _read_error_row(task, pos, exc)
            return
        if not line.strip():
            continue
        v = validate_json_line(line, max_text_bytes=max_text_bytes)
        # the raw bytes and text are kept for refused records only: a valid record that is
        # quarantined later (a conflicting copy) has its line read again (read_lines)
        text = line.decode("utf-8", errors="replace") if v.reason else None
        yield _row(task, pos, line_no, line if v.reason else None, text, v)


def _read_parquet(
    task: ReadTask, max_text_bytes: int, errors: tuple[type[BaseException], ...]
) -> Iterator[RecordRow]:
    import pyarrow.parquet as pq

    fs, p = _fs(task.file.uri)
    try:
        with fs.open_input_file(p) as fh:
            pf = pq.ParquetFile(fh)
            if pf.metadata.num_row_groups == 0:
                return
            first_row = sum(pf.metadata.row_group(g).num_rows for g in range(task.start))
            rows = pf.read_row_group(task.start).to_pylist()
    except errors as exc:
        yield _read_error_row(task, 0, exc)
        return
    for i, row in enumerate(rows):
        obj, content_hash, raw = parquet_row_identity(row)
        raw_bytes = raw.encode("utf-8", "surrogatepass")
        v = (
            validate_object(obj, content_hash, max_text_bytes=max_text_bytes)
            if obj is not None
            else Verdict(INVALID_JSON, None, None, content_hash, None)
        )
        yield _row(task, first_row + i, first_row + i + 1, raw_bytes, raw, v)


CHUNK_BYTES = 8 * 1024 * 1024  # a read task holds about this much input at a time
_BLANK_START = frozenset(b" \t\n\r\x0b\x0c")

#: (buffer, line starts, line ends, byte offset of the buffer, line number of the first line
#: or None): line i is ``buffer[starts[i]:ends[i]]``, newline and trailing ``\r`` removed
LineChunk = tuple[bytes, Any, Any, int, "int | None"]


def _line_chunks(task: ReadTask, chunk_bytes: int | None = None) -> Iterator[LineChunk]:
    """The task's lines, ``chunk_bytes`` of input at a time (the lines of
    :func:`_iter_lines`, blank ones included: a line belongs to the range holding its
    first byte)."""
    import numpy as np

    fs, p = _fs(task.file.uri)
    with fs.open_input_file(p) as native:
        fh: Any = io.BufferedReader(_RawAdapter(native), buffer_size=1 << 20)
        if task.file.fmt == "jsonl.gz":
            fh = gzip.GzipFile(fileobj=fh)
        base, skip_first = 0, False
        line_no: int | None = 1
        if task.start > 0:
            fh.seek(task.start - 1)
            base, skip_first, line_no = task.start - 1, True, None  # line numbers unknown in a range
        end = task.end if task.end >= 0 else None
        carry = b""
        while True:
            data = fh.read(chunk_bytes or CHUNK_BYTES)
            eof = not data
            buf = carry + data if carry else data
            arr = np.frombuffer(buf, dtype=np.uint8)
            ends = np.flatnonzero(arr == 10)
            consumed = int(ends[-1]) + 1 if len(ends) else 0
            if eof and consumed < len(buf):  # the last line has no newline
                ends = np.append(ends, len(buf))
                consumed = len(buf)
            starts = np.concatenate([[0], ends[:-1] + 1]).astype(np.int64) if len(ends) else ends
            if skip_first and len(starts):
                starts, ends, skip_first = starts[1:], ends[1:], False
            stop = False
            if end is not None and len(starts):
                inside = int(np.searchsorted(base + starts, end, side="left"))
                stop = inside < len(starts)
                starts, ends = starts[:inside], ends[:inside]
            ends = ends.copy()
            while True:  # strip trailing carriage returns (as rstrip(b"\r"))
                cr = ends > starts
                cr[cr] = arr[ends[cr] - 1] == 13
                if not cr.any():
                    break
                ends[cr] -= 1
            if len(starts):
                yield buf, starts, ends, base, line_no
                if line_no is not None:
                    line_no += len(starts)
            if stop or eof:
                return
            carry = buf[consumed:]
            base += consumed


def _fast_batch(
    task: ReadTask, lines: Any, texts_ok: Any, pos: Any, line_nos: Any, cols: dict[str, Any], schema: Any
) -> Any:
    """A records batch from the columns of :func:`echo.stages.validate_arrow.validate_lines`."""
    import pyarrow as pa
    import pyarrow.compute as pc

    n = len(lines)
    refused = pc.is_valid(cols["q_reason"])
    raw = pc.if_else(refused, texts_ok, pa.nulls(n, pa.string()))
    raw_bytes = pc.if_else(refused, lines, pa.nulls(n, pa.binary()))  # refused only, as read_task
    values = {
        "source": pa.array([task.file.uri] * n, pa.string()) if n else pa.array([], pa.string()),
        "path_idx": pa.array(np.full(n, task.file.path_idx, dtype=np.int32)),
        "pos": pa.array(pos, pa.int64()),
        "line_no": line_nos,
        "raw_bytes": raw_bytes,
        "raw": raw,
        **cols,
    }
    return pa.RecordBatch.from_arrays([values[f.name].cast(f.type) for f in schema], schema=schema)


def read_task_batches(task: ReadTask, max_text_bytes: int, schema: Any) -> Iterator[Any]:
    """The records of one task as Arrow batches (``schema``: :func:`_arrow_records_schema`).

    JSON Lines are validated a chunk at a time by
    :func:`echo.stages.validate_arrow.validate_lines`; the lines it does not decide go
    through the reference validator (:func:`read_task`'s path), so the rows are those of
    :func:`read_task`, in another order (``(path_idx, pos)`` orders them). Parquet rows
    and read errors are :func:`read_task`'s."""
    import pyarrow as pa

    from echo.stages.validate_arrow import validate_lines

    if task.file.fmt == "parquet":
        yield from _batches(read_task(task, max_text_bytes), schema)
        return
    errors = _read_errors()
    chunks = _line_chunks(task)
    pos = task.start
    while True:
        try:
            buf, starts, ends, base, first_no = next(chunks)
        except StopIteration:
            return
        except errors as exc:
            yield from _batches(iter([_read_error_row(task, pos, exc)]), schema)
            return
        pos = base + int(ends[-1])
        numbers = np.arange(len(starts), dtype=np.int64) + first_no if first_no is not None else None
        # blank lines are not records: only lines starting with white space can be blank
        maybe_blank = np.flatnonzero((ends == starts) | np.isin(np.frombuffer(buf, np.uint8)[np.minimum(starts, len(buf) - 1)], list(_BLANK_START)))
        keep = np.ones(len(starts), dtype=bool)
        for i in maybe_blank.tolist():
            if not buf[starts[i] : ends[i]].strip():
                keep[i] = False
        starts, ends = starts[keep], ends[keep]
        numbers = numbers[keep] if numbers is not None else None
        lines = pa.array([buf[a:b] for a, b in zip(starts.tolist(), ends.tolist(), strict=True)], pa.binary())
        del buf
        handled, cols = validate_lines(lines, max_text_bytes=max_text_bytes)
        if len(handled):
            take = pa.array(handled)
            fast_lines = lines.take(take)
            line_nos = pa.array(numbers[handled], pa.int64()) if numbers is not None else pa.nulls(len(handled), pa.int64())
            yield _fast_batch(task, fast_lines, fast_lines.cast(pa.string()), base + starts[handled], line_nos, cols, schema)
        rest = np.ones(len(starts), dtype=bool)
        rest[handled] = False
        if rest.any():
            rows = []
            for i in np.flatnonzero(rest).tolist():
                line = lines[i].as_py()
                v = validate_json_line(line, max_text_bytes=max_text_bytes)
                text = line.decode("utf-8", errors="replace") if v.reason else None
                no = int(numbers[i]) if numbers is not None else None
                rows.append(_row(task, base + int(starts[i]), no, line if v.reason else None, text, v))
            yield from _batches(iter(rows), schema)


def records_schema() -> Any:
    from pyspark.sql.types import (
        BinaryType,
        IntegerType,
        LongType,
        StringType,
        StructField,
        StructType,
    )

    from echo.lake.tables import EVENT_FIELDS

    return StructType(
        [
            StructField("source", StringType(), False),
            StructField("path_idx", IntegerType(), False),
            StructField("pos", LongType(), False),
            StructField("line_no", LongType(), True),
            # JSON Lines: refused records only (a line is read again by read_lines when a
            # valid record is quarantined later); Parquet: every record (its canonical text)
            StructField("raw_bytes", BinaryType(), True),
            StructField("raw", StringType(), True),  # refused records only (see read_task)
            StructField("q_reason", StringType(), True),  # None: valid event
            StructField("q_detail", StringType(), True),
            StructField("record_event_id", StringType(), True),
            StructField("content_hash", StringType(), False),
            *[StructField(f.name, f.dataType, True) for f in EVENT_FIELDS.fields],
        ]
    )


def _arrow_records_schema() -> Any:
    from echo.lake.arrow import to_arrow_schema

    return to_arrow_schema(records_schema())


def _batches(rows: Iterator[RecordRow], schema: Any, size: int = 4096) -> Iterator[Any]:
    import pyarrow as pa

    def batch(buf: list[RecordRow]) -> Any:
        columns = zip(*buf, strict=True)
        arrays = [pa.array(c, f.type) for c, f in zip(columns, schema, strict=True)]
        return pa.RecordBatch.from_arrays(arrays, schema=schema)

    buf: list[RecordRow] = []
    for row in rows:
        buf.append(row)
        if len(buf) >= size:
            yield batch(buf)
            buf = []
    if buf:
        yield batch(buf)


def read_records(spark: SparkSession, files: Sequence[InputFile], *, max_text_bytes: int) -> DataFrame:
    """All records of the inputs as a DataFrame (``records_schema``), read by Spark tasks.

    One Spark task per read task; records travel to the JVM as Arrow batches."""
    tasks = plan_tasks(files)
    schema = _arrow_records_schema()

    def read(batches: Iterable[Any]) -> Iterable[Any]:
        for batch in batches:
            for task_no in batch.column(0).to_pylist():
                yield from read_task_batches(tasks[task_no], max_text_bytes, schema)

    ids = spark.range(0, len(tasks), 1, numPartitions=max(1, len(tasks)))
    return ids.mapInArrow(read, records_schema())


def _lines_at(f: InputFile, positions: Sequence[int]) -> list[bytes]:
    """The lines of JSON Lines input ``f`` that start at the byte offsets ``positions``
    (ascending; offsets into the decompressed text of a ``.gz``), as the read gave them:
    without the newline and trailing carriage returns."""
    fs, p = _fs(f.uri)
    out: list[bytes] = []
    with fs.open_input_file(p) as native:
        fh: Any = io.BufferedReader(_RawAdapter(native), buffer_size=1 << 20)
        if f.fmt == "jsonl.gz":  # forward seeks only: the file is decompressed once
            fh = io.BufferedReader(gzip.GzipFile(fileobj=fh), buffer_size=1 << 20)
        for pos in positions:
            fh.seek(pos)
            out.append(fh.readline().rstrip(b"\n").rstrip(b"\r"))
    return out


def read_lines(files: Sequence[InputFile], positions: DataFrame, *, tasks: int | None = None) -> DataFrame:
    """``path_idx, pos, raw_bytes``: the JSON Lines records at ``positions`` (``path_idx,
    pos`` of :func:`read_records`' rows) read again from their inputs, by ``tasks`` Spark
    tasks (the positions of one file in one task; None: one task, for a few positions).
    :func:`read_records` keeps the raw bytes of refused JSON Lines records only; this gives
    them for the few valid records that a run quarantines after all (conflicting copies).
    Positions in Parquet inputs are left out (their records keep their text). An input
    that cannot be read fails the job (the caller's ``InputError``)."""
    import pyarrow as pa
    from pyspark.sql import functions as F

    by_idx = {f.path_idx: f for f in files if f.fmt != "parquet"}
    fields = [pa.field("path_idx", pa.int32()), pa.field("pos", pa.int64()), pa.field("raw_bytes", pa.binary())]

    def read(batches: Iterable[Any]) -> Iterable[Any]:
        wanted: dict[int, set[int]] = {}
        for batch in batches:
            for i, pos in zip(batch.column(0).to_pylist(), batch.column(1).to_pylist(), strict=True):
                wanted.setdefault(int(i), set()).add(int(pos))
        for i in sorted(wanted):
            ps = sorted(wanted[i])
            arrays = [pa.array([i] * len(ps), pa.int32()), pa.array(ps, pa.int64()), pa.array(_lines_at(by_idx[i], ps), pa.binary())]
            yield pa.RecordBatch.from_arrays(arrays, schema=pa.schema(fields))

    wanted = positions.select("path_idx", "pos").where(F.col("path_idx").isin(sorted(by_idx)))
    wanted = wanted.coalesce(1) if tasks is None else wanted.repartition(tasks, "path_idx")
    return wanted.mapInArrow(read, "path_idx int, pos long, raw_bytes binary")
