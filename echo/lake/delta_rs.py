"""The embedded Delta backend: Spark tasks write Parquet, delta-rs commits it.

No table's data passes through the driver: Spark's executors write the Parquet files
(Hive-style ``col=value/`` directories under the table root, as Delta itself lays them
out), and the driver commits the list of files, with their sizes and row counts, in one
Delta transaction through ``deltalake``'s write-transaction API. Replacing partitions and
upserts are copy-on-write at partition granularity: the new files and the removal of the
old ones land in the same commit. Tables are standard Delta tables that any Delta reader
(delta-spark, Databricks, delta-rs, DuckDB, Trino) opens. The one exception: the few rows
of the bookkeeping tables (a row per stage or per run), which the driver reads and
writes itself (:meth:`DeltaRsLake.small_rows`, :meth:`DeltaRsLake.upsert_rows`,
:meth:`DeltaRsLake.append_rows`) instead of running a Spark job for each.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from echo.errors import LakeError
from echo.lake.arrow import arrow_schema
from echo.lake.base import Lake, in_predicate, is_uc, join_uri, spark_uri
from echo.lake.guard import committing, writing
from echo.lake.tables import Table

if TYPE_CHECKING:
    from deltalake import DeltaTable
    from pyspark.sql import DataFrame, SparkSession

HIVE_NULL = "__HIVE_DEFAULT_PARTITION__"
#: Table properties of every table this backend creates: a checkpoint every 10 commits,
#: as Delta Spark writes by default (delta-rs's default is 100), so that opening a table
#: replays at most 10 JSON commits whatever the lake's age.
TABLE_PROPERTIES: dict[str, str | None] = {"delta.checkpointInterval": "10"}

class DeltaRsLake(Lake):
    backend_name = "delta-rs"

    def __init__(self, spark: SparkSession, root: str) -> None:
        if is_uc(root):  # else "uc:cat.schema" would silently become a local directory
            raise LakeError(
                f"--lake {root}: Unity Catalog names need the delta-spark backend; run on "
                "Databricks or with --lake-backend delta-spark (delta-spark jars), or pass a path"
            )
        super().__init__(spark, root)

    def _storage_options(self) -> dict[str, str] | None:
        return None  # object-store credentials come from the environment (AWS_*, AZURE_*, ...)

    def _table(self, table: Table) -> DeltaTable | None:
        from deltalake import DeltaTable
        from deltalake.exceptions import TableNotFoundError

        try:
            return DeltaTable(self.path(table), storage_options=self._storage_options())
        except TableNotFoundError:
            if self._exists(self.path(table)) and not self._exists(join_uri(self.path(table), "_delta_log")):
                raise LakeError(f"{self.path(table)} exists but is not a Delta table") from None
            return None

    def exists(self, table: Table) -> bool:
        return self._table(table) is not None

    def ensure(self, table: Table) -> None:
        from deltalake import DeltaTable

        dt = self._table(table)
        if dt is not None:
            self._upgrade(table, dt)
            return
        self.before_commit()
        with committing(table.name, self.root, "create"):
            DeltaTable.create(
                self.path(table),
                schema=arrow_schema(table),
                mode="ignore",
                partition_by=list(table.partition_by) or None,
                name=table.name.replace("/", "_"),
                description=table.description,
                configuration=TABLE_PROPERTIES,
                storage_options=self._storage_options(),
            )

    def _upgrade(self, table: Table, dt: DeltaTable) -> None:
        """Give a table created before :data:`TABLE_PROPERTIES` (a lake of an older Echo)
        the properties it lacks, in one metadata commit the first time a run ensures it."""
        from deltalake import CommitProperties

        configuration = dt.metadata().configuration
        missing = {k: v for k, v in TABLE_PROPERTIES.items() if v is not None and configuration.get(k) is None}
        if not missing:
            return
        self.before_commit()
        with committing(table.name, self.root, "set properties"):
            dt.alter.set_table_properties(
                missing, commit_properties=CommitProperties(custom_metadata={"echo.backend": self.backend_name})
            )

    def version(self, table: Table) -> int | None:
        dt = self._table(table)
        return None if dt is None else int(dt.version())

    def history(self, table: Table) -> list[dict[str, Any]]:
        dt = self._table(table)
        return [] if dt is None else list(dt.history())

    # -- read ---------------------------------------------------------------------------
    def files(self, table: Table) -> list[str]:
        dt = self._table(table)
        return [] if dt is None else list(dt.file_uris())

    def files_per_partition(self, table: Table) -> dict[str, int]:
        import pyarrow as pa

        dt = self._table(table)
        if dt is None or not table.partition_by:
            return {}
        values = pa.table(dt.get_add_actions(flatten=True))[f"partition.{table.partition_by[0]}"]
        return {str(c["values"]): int(c["counts"]) for c in values.value_counts().to_pylist()}

    def _selected(self, table: Table, values: Sequence[Any] | None) -> list[str]:
        """URIs of the table's files (only those of partitions ``values`` when given); adds
        their sizes to :attr:`bytes_read`."""
        import pyarrow as pa

        dt = self._table(table)
        if dt is None:
            return []
        col = table.partition_by[0] if table.partition_by else None
        wanted = None if values is None or col is None else {str(v) for v in values}
        if wanted is not None and not wanted:
            return []
        for a in pa.table(dt.get_add_actions(flatten=True)).to_pylist():
            value = a.get(f"partition.{col}") if col else None
            if wanted is None or (None if value is None else str(value)) in wanted:
                self.bytes_read += int(a.get("size_bytes") or 0)
        if wanted is None or col is None:
            return list(dt.file_uris())
        return list(dt.file_uris(partition_filters=[(col, "in", sorted(wanted))]))

    def read(self, table: Table) -> DataFrame:
        return self._read_files(table, self._selected(table, None))

    def read_partitions(self, table: Table, values: Sequence[Any]) -> DataFrame:
        if not table.partition_by:
            return self.read(table)
        return self._read_files(table, self._selected(table, list(values)))

    def _arrow_read(self, table: Table, columns: Sequence[str]) -> Any:
        """The table's current rows (``columns``) read by delta-rs into the driver, None when
        the table is missing; the bytes are counted as a read through Spark counts them."""
        dt = self._table(table)
        if dt is None:
            return None
        self._selected(table, None)
        return dt.to_pyarrow_table(columns=list(columns))

    def small_rows(self, table: Table, columns: Sequence[str]) -> list[tuple[Any, ...]]:
        data = self._arrow_read(table, columns)
        if data is None or not data.num_rows:
            return []
        return list(zip(*(data.column(c).to_pylist() for c in columns), strict=True))

    def _read_files(self, table: Table, files: list[str]) -> DataFrame:
        if not files:
            return self.empty(table)
        reader = self.spark.read.schema(table.schema)
        if table.partition_by:
            reader = reader.option("basePath", spark_uri(self.path(table)))
        df = reader.parquet(*[spark_uri(f) for f in files])
        # Spark puts partition columns last; most tables list them last already
        data = [c for c in table.columns if c not in table.partition_by]
        return df if [*data, *table.partition_by] == list(table.columns) else df.select(*table.columns)

    # -- write --------------------------------------------------------------------------
    def _stage(self, table: Table, df: DataFrame) -> list[Any]:
        """Let Spark write ``df`` as Parquet under the table root; return AddActions."""
        import pyarrow.fs as pafs
        import pyarrow.parquet as pq
        from deltalake.transaction import AddAction

        self.ensure(table)
        df = self.conform(table, df)
        token = uuid.uuid4().hex
        staging = join_uri(self.path(table), f"_staging-{token}")
        writer = df.write.mode("errorifexists").options(**table.parquet_options())
        if table.partition_by:
            writer = writer.partitionBy(*table.partition_by)
        fs, base = self._fs(staging)
        _, table_base = self._fs(self.path(table))
        actions = []
        try:  # the staging folder goes in every case: vacuum skips names starting with '_'
            with writing(table.name, self.root):
                writer.parquet(spark_uri(staging))
            infos = fs.get_file_info(pafs.FileSelector(base, recursive=True))
            for info in infos:
                if info.type != pafs.FileType.File or not info.path.endswith(".parquet"):
                    continue
                rel = info.path[len(base) :].lstrip("/")
                parts = rel.split("/")
                partition_values: dict[str, str | None] = {}
                for seg in parts[:-1]:
                    key, _, raw = seg.partition("=")
                    val = unquote(raw)
                    partition_values[key] = None if val == HIVE_NULL else val
                # final name: unique per commit, in Delta's usual col=value/ layout
                final_rel = "/".join([*parts[:-1], f"part-{token}-{parts[-1].removeprefix('part-')}"])
                final = f"{table_base}/{final_rel}"
                with writing(table.name, self.root):
                    fs.create_dir(final.rsplit("/", 1)[0], recursive=True)
                    fs.move(info.path, final)
                with fs.open_input_file(final) as fh:
                    rows = pq.ParquetFile(fh).metadata.num_rows
                actions.append(
                    AddAction(
                        path=final_rel,
                        size=int(info.size),
                        partition_values=partition_values,
                        modification_time=int(time.time() * 1000),
                        data_change=True,
                        stats=json.dumps({"numRecords": rows}),
                    )
                )
        finally:
            if fs.get_file_info(base).type != pafs.FileType.NotFound:
                fs.delete_dir(base)
        return actions

    def _commit(
        self,
        table: Table,
        actions: list[Any],
        *,
        mode: str,
        partition_filters: list[tuple[str, str, Any]] | None,
        info: dict[str, str] | None,
    ) -> None:
        from deltalake import CommitProperties

        self.before_commit()
        dt = self._table(table)
        if dt is None:
            raise LakeError(f"{self.path(table)} vanished during the write")
        meta = {"echo.backend": self.backend_name, **(info or {})}
        with committing(table.name, self.root, mode):
            dt.create_write_transaction(
                actions,
                mode=mode,
                schema=arrow_schema(table),
                partition_by=list(table.partition_by) or None,
                partition_filters=partition_filters,
                commit_properties=CommitProperties(custom_metadata=meta),
            )

    def append(self, table: Table, df: DataFrame, *, info: dict[str, str] | None = None) -> None:
        actions = self._stage(table, df)
        if actions:
            self._commit(table, actions, mode="append", partition_filters=None, info=info)
        else:
            self.ensure(table)

    def replace_partitions(
        self,
        table: Table,
        df: DataFrame,
        values: Sequence[Any],
        *,
        info: dict[str, str] | None = None,
    ) -> None:
        if table.partition_by and len(table.partition_by) != 1:
            raise ValueError("replace_partitions supports tables with one partition column")
        if table.partition_by and not values:
            return
        actions = self._stage(table, df)
        filters = None
        if table.partition_by:
            col = table.partition_by[0]
            filters = [(col, "in", sorted({str(v) for v in values}))]
        self._commit(table, actions, mode="overwrite", partition_filters=filters, info=info)

    def merge(self, table: Table, df: DataFrame, *, info: dict[str, str] | None = None) -> None:
        df = self.conform(table, df).cache()
        try:
            if table.partition_by:
                col = table.partition_by[0]
                values = [r[0] for r in df.select(col).distinct().collect()]
                if not values:
                    return
                current = self.read(table).where(in_predicate(col, values))
            else:
                values = []
                current = self.read(table)
            keep = current.join(df.select(*table.keys), on=list(table.keys), how="left_anti")
            # Old files stay on disk after the commit (only vacuum removes them), so the
            # write may read the partitions it replaces.
            self.replace_partitions(table, keep.unionByName(df), values, info=info)
        finally:
            df.unpersist()

    def _arrow_rows(self, table: Table, rows: Sequence[tuple[Any, ...]]) -> Any:
        """``rows`` (tuples in the table's column order) as an Arrow table of its schema."""
        import pyarrow as pa

        if table.partition_by:
            raise ValueError(f"{table.name}: rows are written this way to unpartitioned tables only")
        return pa.Table.from_pylist([dict(zip(table.columns, r, strict=True)) for r in rows], schema=arrow_schema(table))

    def _write_file(self, table: Table, data: Any) -> Any:
        """``data`` (Arrow) as one Parquet file under the table root; its AddAction."""
        import pyarrow.parquet as pq
        from deltalake.transaction import AddAction

        rel = f"part-{uuid.uuid4().hex}-00000.snappy.parquet"
        fs, base = self._fs(self.path(table))
        with writing(table.name, self.root):
            with fs.open_output_stream(f"{base}/{rel}") as fh:
                pq.write_table(data, fh, compression="snappy")
            size = fs.get_file_info(f"{base}/{rel}").size
        return AddAction(path=rel, size=int(size), partition_values={}, modification_time=int(time.time() * 1000),
                         data_change=True, stats=json.dumps({"numRecords": data.num_rows}))  # fmt: skip

    def append_rows(self, table: Table, rows: Sequence[tuple[Any, ...]], *, info: dict[str, str] | None = None) -> None:
        data = self._arrow_rows(table, rows)
        self.ensure(table)
        self._commit(table, [self._write_file(table, data)], mode="append", partition_filters=None, info=info)

    def upsert_rows(self, table: Table, rows: Sequence[tuple[Any, ...]], *, info: dict[str, str] | None = None) -> None:
        import pyarrow as pa

        new = self._arrow_rows(table, rows)
        replaced = set(zip(*(new.column(k).to_pylist() for k in table.keys), strict=True))
        self.ensure(table)
        current = self._arrow_read(table, table.columns)
        if current is None:
            raise LakeError(f"{self.path(table)} vanished during the write")
        current = current.cast(new.schema)
        stored = zip(*(current.column(k).to_pylist() for k in table.keys), strict=True)
        keep = pa.array([k not in replaced for k in stored], pa.bool_())
        out = pa.concat_tables([current.filter(keep), new])
        self._commit(table, [self._write_file(table, out)], mode="overwrite", partition_filters=None, info=info)

    def delete(self, table: Table, predicate: str) -> int:
        dt = self._table(table)
        if dt is None:
            return 0
        self.before_commit()
        with committing(table.name, self.root, "delete"):
            metrics = dt.delete(predicate)
        return int(metrics.get("num_deleted_rows", 0) or 0)

    def purge(self, table: Table) -> None:
        """Nothing to do: delta-rs's DELETE rewrites the files without the rows (it writes
        no deletion vectors), so :meth:`vacuum` alone removes them from storage."""

    def vacuum(self, table: Table, retention_hours: int) -> int:
        dt = self._table(table)
        if dt is None:
            return 0
        with committing(table.name, self.root, "vacuum"):
            removed = dt.vacuum(retention_hours=retention_hours, dry_run=False, enforce_retention_duration=False)
        return len(removed)
