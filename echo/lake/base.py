"""The Delta layer's interface: the logical operations every job uses.

Two backends implement it (see :mod:`echo.lake.delta_rs` and :mod:`echo.lake.delta_spark`);
jobs never see which one runs. Every write is one Delta commit, so a failed or
interrupted job leaves each table at its last committed version.
"""

from __future__ import annotations

import json
import os
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from echo.errors import LakeError
from echo.lake.tables import Table

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

    from echo.lake.lease import Lease, LeaseStore

MARKER = "_echo/lake.json"

#: ``--lake uc:catalog.schema``: Unity Catalog table names instead of paths (delta-spark only).
UC_PREFIX = "uc:"


def is_uc(root: str) -> bool:
    return root.startswith(UC_PREFIX)


def join_uri(root: str, *parts: str) -> str:
    return "/".join([root.rstrip("/"), *[p.strip("/") for p in parts]])


def is_local(uri: str) -> bool:
    """A path on the driver's own filesystem: a plain path or a ``file:`` URI in any of its
    spellings (``file:/p``, ``file:///p``, ``file://localhost/p``)."""
    return not is_uc(uri) and ("://" not in uri or uri.startswith("file:"))


def local_path(uri: str) -> str:
    """The absolute filesystem path of a local lake path or ``file:`` URI (RFC 8089:
    ``file:/p``, ``file:///p`` and ``file://localhost/p`` are the same file; ``%XX`` escapes
    are decoded). Plain paths are made absolute against the working directory."""
    if uri.startswith("file:"):
        from urllib.parse import unquote, urlsplit

        parts = urlsplit(uri)
        if parts.netloc not in ("", "localhost"):
            raise LakeError(f"{uri}: a file: URI with a host ({parts.netloc}) is not a local path")
        return os.path.abspath(unquote(parts.path) or "/")
    return os.path.abspath(uri)


def normalize_root(root: str) -> str:
    """The one spelling of a lake root that every backend and every comparison uses: an
    absolute local path (whatever local form was given), a Unity Catalog name as given, or
    an object-store URI without a trailing slash."""
    if is_uc(root):
        return root
    if is_local(root):
        return local_path(root)
    return root.rstrip("/")


def spark_uri(uri: str) -> str:
    """The URI that Spark, Hadoop and Delta all accept *and* compare equal.

    Local paths become ``file:`` + absolute path (one slash): Hadoop qualifies a local path
    to exactly that form, and Delta's ``CREATE TABLE ... LOCATION`` (``DeltaTableBuilder.
    location``) refuses an identifier the qualified location does not end with, so
    ``file:///p`` fails with ``DELTA_AMBIGUOUS_PATHS_IN_CREATE_TABLE`` (delta-io/delta#1523)
    while ``file:/p`` passes. Hadoop reads S3 through ``s3a://``; other object-store URIs
    (``s3a://``, ``abfss://``, ``gs://``, ``hdfs://``) pass through unchanged.
    """
    if is_uc(uri):
        raise LakeError(f"{uri} is a Unity Catalog name, not a path")
    if uri.startswith("s3://"):
        return "s3a://" + uri[len("s3://") :].rstrip("/")
    if is_local(uri):
        return "file:" + local_path(uri)
    return uri.rstrip("/")


def sql_literal(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, (int, float)):
        return repr(value)
    return "'" + str(value).replace("\\", "\\\\").replace("'", "\\'") + "'"


def _quoted(name: str) -> str:
    """A column name as a SQL identifier."""
    return "`" + name.replace("`", "``") + "`"


def in_predicate(column: str, values: Sequence[Any]) -> str:
    return f"{_quoted(column)} IN ({', '.join(sql_literal(v) for v in values)})"


class Lake(ABC):
    """A lake root holding Echo's Delta tables."""

    backend_name = "abstract"
    #: why :func:`echo.lake.open_lake` picked this backend (one line)
    backend_reason = ""

    def __init__(self, spark: SparkSession, root: str) -> None:
        if not root:
            raise LakeError("no lake given: pass --lake DIR (a local path or an object-store URI)")
        self.spark = spark
        self.root = normalize_root(root)
        self._buckets = 0
        #: bytes of the data files this lake handed to Spark reads (delta-rs backend): the
        #: files each read selects after partition pruning (benchmarks/bench_history.py)
        self.bytes_read = 0
        #: the single-writer lease this process holds on the lake, if any
        self.lease: Lease | None = None

    # -- lake root -------------------------------------------------------------------
    def path(self, table: Table) -> str:
        return join_uri(self.root, table.name)

    def check_root(self, *, create: bool) -> None:
        """Refuse a root that is not an Echo lake. ``create`` makes a new, empty one
        (only where nothing is, or an empty directory)."""
        marker_present = self._exists(join_uri(self.root, MARKER))
        if marker_present:
            return
        if not create:
            raise LakeError(f"{self.root} is not an Echo lake (no {MARKER}); run 'ingest' first")
        if is_local(self.root):
            p = local_path(self.root)
            if os.path.exists(p) and not os.path.isdir(p):
                raise LakeError(f"lake root {self.root} is a file, not a directory")
            if os.path.isdir(p) and os.listdir(p):
                raise LakeError(
                    f"{self.root} is not empty and is not an Echo lake (no {MARKER}); "
                    "refusing to write tables into it"
                )
        self._write_text(join_uri(self.root, MARKER), json.dumps({"format": "echo-lake", "version": 1}))

    # -- the single-writer lease (echo.lake.lease) ---------------------------------------
    def lease_store(self) -> LeaseStore:
        """Where this lake's lease row lives (a Delta table under ``_echo/lease``)."""
        from echo.lake.lease import DeltaRsLeaseStore

        return DeltaRsLeaseStore(self)

    @property
    def buckets(self) -> int:
        """The lake's user-hash buckets: an invariant recorded when the lake was created
        (``_echo/lease``); 16 for a lake that records none yet."""
        if not self._buckets:
            from echo.lake.lease import DEFAULT_BUCKETS

            row = self.lease_store().read()
            self._buckets = int(row["buckets"]) if row else DEFAULT_BUCKETS
        return self._buckets

    @buckets.setter
    def buckets(self, value: int) -> None:
        self._buckets = int(value)

    def has_data_tables(self) -> bool:
        from echo.lake.tables import ALL_TABLES

        return any(self.exists(t) for t in ALL_TABLES)

    def before_commit(self) -> None:
        """Every backend calls this before a commit: a run whose lease was lost (another
        run took the lake over) must not write."""
        if self.lease is not None:
            self.lease.check()

    # -- storage primitives (local or object store) --------------------------------------
    def _fs(self, uri: str) -> tuple[Any, str]:
        import pyarrow.fs as pafs

        if is_local(uri):
            return pafs.LocalFileSystem(), local_path(uri)
        return pafs.FileSystem.from_uri(uri)

    def _exists(self, uri: str) -> bool:
        import pyarrow.fs as pafs

        fs, p = self._fs(uri)
        return bool(fs.get_file_info(p).type != pafs.FileType.NotFound)

    def _write_text(self, uri: str, text: str) -> None:
        fs, p = self._fs(uri)
        parent = p.rsplit("/", 1)[0]
        fs.create_dir(parent, recursive=True)
        with fs.open_output_stream(p) as out:
            out.write(text.encode("utf-8"))

    # -- table operations ---------------------------------------------------------------
    @abstractmethod
    def exists(self, table: Table) -> bool:
        """True when the table has a Delta log."""

    @abstractmethod
    def ensure(self, table: Table) -> None:
        """Create the table with its explicit schema and partitioning if it is missing."""

    @abstractmethod
    def read(self, table: Table) -> DataFrame:
        """The current snapshot as a Spark DataFrame with the table's schema (empty if the
        table does not exist yet)."""

    def read_partitions(self, table: Table, values: Sequence[Any]) -> DataFrame:
        """The rows whose (single) partition column is in ``values``, reading only those
        partitions' files (empty when ``values`` is)."""
        from pyspark.sql import functions as F

        if not values:
            return self.empty(table)
        return self.read(table).where(F.col(table.partition_by[0]).isin(sorted(set(values))))

    def small_rows(self, table: Table, columns: Sequence[str]) -> list[tuple[Any, ...]]:
        """Every row of a small bookkeeping table (``_echo/stage_state``,
        ``bronze/ingest_runs``: a row per stage or per run), ``columns`` only, as Python
        values. The delta-rs backend reads the files itself, without a Spark job (a stage
        reads these tables ~10 times; as Spark jobs that was ~0.7 s of every stage)."""
        return [tuple(r) for r in self.read(table).select(*columns).collect()]

    def files_per_partition(self, table: Table) -> dict[str, int]:
        """Data files of the table's current version per value (as a string) of its
        single partition column ({} for a missing or unpartitioned table). The
        delta-rs backend reads it from the Delta log; this default lists the files a
        read would open."""
        import re
        from collections import Counter

        if not table.partition_by or not self.exists(table):
            return {}
        part = re.compile(re.escape(table.partition_by[0]) + r"=([^/]*)/")
        return dict(Counter(m.group(1) for f in self.read(table).inputFiles() if (m := part.search(f))))

    @abstractmethod
    def version(self, table: Table) -> int | None:
        """Current Delta version, or None when the table does not exist."""

    @abstractmethod
    def history(self, table: Table) -> list[dict[str, Any]]:
        """Commit history, newest first (Delta's ``history``)."""

    @abstractmethod
    def append(self, table: Table, df: DataFrame, *, info: dict[str, str] | None = None) -> None:
        """Insert the rows of ``df`` in one commit."""

    @abstractmethod
    def replace_partitions(
        self,
        table: Table,
        df: DataFrame,
        values: Sequence[Any],
        *,
        info: dict[str, str] | None = None,
    ) -> None:
        """Atomically replace every row whose (single) partition column is in ``values``
        with the rows of ``df`` (which must lie in those partitions). Unpartitioned tables:
        ``values`` is ignored and the whole table is replaced."""

    @abstractmethod
    def merge(self, table: Table, df: DataFrame, *, info: dict[str, str] | None = None) -> None:
        """Upsert ``df`` on the table's natural keys (update matches, insert the rest)."""

    def append_rows(self, table: Table, rows: Sequence[tuple[Any, ...]], *, info: dict[str, str] | None = None) -> None:
        """:meth:`append` for a few Python rows (tuples in the table's column order) to a
        small unpartitioned bookkeeping table (``bronze/ingest_runs``). The delta-rs
        backend writes them as one Parquet file itself, in one commit, without a Spark job."""
        self.append(table, self.spark.createDataFrame(list(rows), table.schema).coalesce(1), info=info)

    def upsert_rows(self, table: Table, rows: Sequence[tuple[Any, ...]], *, info: dict[str, str] | None = None) -> None:
        """:meth:`merge` for a few Python rows (tuples in the table's column order) into a
        small unpartitioned bookkeeping table (``_echo/stage_state``). The delta-rs backend
        rewrites the table's one file itself, in one commit, without a Spark job."""
        self.merge(table, self.spark.createDataFrame(list(rows), table.schema), info=info)

    @abstractmethod
    def delete(self, table: Table, predicate: str) -> int:
        """Delete the rows matching a SQL predicate; returns rows deleted."""

    @abstractmethod
    def purge(self, table: Table) -> None:
        """Rewrite the data files that still hold rows a DELETE only marked as deleted
        (deletion vectors), so that a following :meth:`vacuum` removes those rows from
        storage. A no-op where DELETE already rewrites the files."""

    @abstractmethod
    def vacuum(self, table: Table, retention_hours: int) -> int:
        """Physically remove files no longer referenced (older than the retention)."""

    # -- helpers shared by both backends -----------------------------------------------
    def empty(self, table: Table) -> DataFrame:
        """No rows, the table's columns: a relation Spark's optimizer knows is empty (a
        false filter over one row becomes an empty ``LocalRelation``), so the joins,
        unions and aggregations over it are pruned before anything runs. Columns are
        nullable, as in a read of the table's files."""
        cols = [f"CAST(NULL AS {f.dataType.simpleString()}) AS {_quoted(f.name)}" for f in table.schema.fields]
        return self.spark.range(1).selectExpr(*cols).where("false")

    def conform(self, table: Table, df: DataFrame) -> DataFrame:
        """Select and cast ``df`` to exactly the table's columns, in order."""
        missing = [c for c in table.columns if c not in df.columns]
        if missing:
            raise ValueError(f"{table.name}: DataFrame lacks column(s) {missing}")
        # SQL text: one call to the JVM, not ~5 per column (Column.cast parses each type)
        return df.selectExpr(
            *[f"CAST({_quoted(f.name)} AS {f.dataType.simpleString()}) AS {_quoted(f.name)}" for f in table.schema.fields]
        )
