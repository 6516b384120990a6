"""The delta-spark backend: Delta's own Spark integration (clusters, Databricks).

Used when the delta-spark JVM classes are on the classpath (``spark-submit --packages
io.delta:delta-spark_2.13:4.0.0`` with Delta's two session settings, or any Databricks
runtime). Thin on purpose: each logical operation is one Delta API call. The lake root
may also hold Unity Catalog names: ``--lake uc:catalog.schema`` maps ``silver/sessions``
to the table ``catalog.schema.silver_sessions`` (:func:`uc_table_name`).

Deletion vectors (on by default for new tables in many Databricks workspaces, or with
``delta.enableDeletionVectors``): a DELETE then only marks rows in the old files, which
stay referenced, so VACUUM alone would not remove a forgotten user's rows from storage.
:meth:`DeltaSparkLake.purge` runs ``REORG TABLE ... APPLY (PURGE)``, which rewrites just
the files holding soft-deleted rows; the forget job runs it before VACUUM.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from echo.errors import LakeError
from echo.lake.base import UC_PREFIX, Lake, in_predicate, is_uc, spark_uri
from echo.lake.guard import committing
from echo.lake.tables import Table

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession


#: Delta's VACUUM safety check (retention below the table's) and VACUUM commit logging
RETENTION_CHECK = "spark.databricks.delta.retentionDurationCheck.enabled"
VACUUM_LOGGING = "spark.databricks.delta.vacuum.logging.enabled"


def uc_table_name(catalog_schema: str, table: Table) -> str:
    """``catalog.schema`` + ``silver/sessions`` -> ``catalog.schema.silver_sessions``."""
    return f"{catalog_schema}.{table.name.replace('/', '_')}"


class DeltaSparkLake(Lake):
    backend_name = "delta-spark"

    def __init__(self, spark: SparkSession, root: str) -> None:
        super().__init__(spark, root)
        if self.catalog is not None:
            parts = self.catalog.split(".")
            if len(parts) != 2 or not all(p.strip() for p in parts):
                raise LakeError(f"--lake {root}: a Unity Catalog lake is uc:CATALOG.SCHEMA")

    # -- naming: paths or Unity Catalog tables --------------------------------------------
    @property
    def catalog(self) -> str | None:
        return self.root[len(UC_PREFIX) :] if is_uc(self.root) else None

    def ident(self, table: Table) -> str:
        """SQL identifier of the table: ``delta.`path``` or ``catalog.schema.name``."""
        if self.catalog:
            return uc_table_name(self.catalog, table)
        return f"delta.`{spark_uri(self.path(table))}`"

    def lease_store(self) -> Any:
        """Path lakes keep the lease table at ``_echo/lease`` (delta-rs commits it, the
        same put-if-absent log as Delta's); a Unity Catalog lake keeps it as the table
        ``catalog.schema._echo_lease``, swapped with Delta's MERGE."""
        if not self.catalog:
            return super().lease_store()
        return SparkLeaseStore(self)

    def check_root(self, *, create: bool) -> None:
        if self.catalog:
            return  # Unity Catalog governs the schema's existence
        super().check_root(create=create)

    def _dt(self, table: Table) -> Any:
        from delta.tables import DeltaTable

        if self.catalog:
            return DeltaTable.forName(self.spark, self.ident(table))
        return DeltaTable.forPath(self.spark, spark_uri(self.path(table)))

    def exists(self, table: Table) -> bool:
        from delta.tables import DeltaTable

        if self.catalog:
            return bool(self.spark.catalog.tableExists(self.ident(table)))
        return bool(DeltaTable.isDeltaTable(self.spark, spark_uri(self.path(table))))

    def ensure(self, table: Table) -> None:
        from delta.tables import DeltaTable

        if self.exists(table):
            return
        builder = DeltaTable.createIfNotExists(self.spark)
        builder = builder.tableName(self.ident(table)) if self.catalog else builder.location(
            spark_uri(self.path(table))
        )
        builder = builder.addColumns(table.schema).comment(table.description)
        if table.partition_by:
            builder = builder.partitionedBy(*table.partition_by)
        with committing(table.name, self.root, "create"):
            builder.execute()

    def read(self, table: Table) -> DataFrame:
        if not self.exists(table):
            return self.empty(table)
        return self._dt(table).toDF().select(*table.columns)

    def version(self, table: Table) -> int | None:
        if not self.exists(table):
            return None
        return int(self._dt(table).history(1).select("version").first()[0])

    def history(self, table: Table) -> list[dict[str, Any]]:
        if not self.exists(table):
            return []
        return [r.asDict(recursive=True) for r in self._dt(table).history().collect()]

    def _writer(self, df: DataFrame, info: dict[str, str] | None) -> Any:
        import json

        w = df.write.format("delta")
        if info:
            w = w.option("userMetadata", json.dumps(info, sort_keys=True))
        return w

    def _save(self, table: Table, writer: Any) -> None:
        self.before_commit()
        with committing(table.name, self.root, "write"):
            if self.catalog:
                writer.saveAsTable(self.ident(table))
            else:
                writer.save(spark_uri(self.path(table)))

    def append(self, table: Table, df: DataFrame, *, info: dict[str, str] | None = None) -> None:
        self.ensure(table)
        self._save(table, self._writer(self.conform(table, df), info).mode("append"))

    def replace_partitions(
        self,
        table: Table,
        df: DataFrame,
        values: Sequence[Any],
        *,
        info: dict[str, str] | None = None,
    ) -> None:
        self.ensure(table)
        w = self._writer(self.conform(table, df), info).mode("overwrite")
        if table.partition_by:
            if not values:
                return
            w = w.option("replaceWhere", in_predicate(table.partition_by[0], sorted(set(values))))
        self._save(table, w)

    def merge(self, table: Table, df: DataFrame, *, info: dict[str, str] | None = None) -> None:
        self.ensure(table)
        cond = " AND ".join(f"t.`{k}` <=> s.`{k}`" for k in table.keys)
        self.before_commit()
        with committing(table.name, self.root, "merge"):
            (
                self._dt(table)
                .alias("t")
                .merge(self.conform(table, df).alias("s"), cond)
                .whenMatchedUpdateAll()
                .whenNotMatchedInsertAll()
                .execute()
            )

    def delete(self, table: Table, predicate: str) -> int:
        if not self.exists(table):
            return 0
        before = self.read(table).where(predicate).count()
        self.before_commit()
        with committing(table.name, self.root, "delete"):
            self._dt(table).delete(predicate)
        return int(before)

    def purge(self, table: Table) -> None:
        # rewrites only the files with deletion vectors (none: a no-op); a new version, so
        # the VACUUM after it removes the old files
        if self.exists(table):
            self.before_commit()
            with committing(table.name, self.root, "purge"):
                self.spark.sql(f"REORG TABLE {self.ident(table)} APPLY (PURGE)")

    def vacuum(self, table: Table, retention_hours: int) -> int:
        """VACUUM with ``retention_hours``; returns what Delta reports it deleted (the
        ``numDeletedFiles`` of the ``VACUUM END`` commit: files and empty directories).

        Delta refuses a retention below the table's (7 days) unless its safety check is off,
        and records ``VACUUM START``/``END`` commits only where logging is on (not by default
        on S3): both settings are set for this call only and restored afterwards, so the rest
        of the session keeps Delta's check."""
        from echo.spark import session_conf

        if not self.exists(table):
            return 0
        before = self.version(table)
        settings = {RETENTION_CHECK: "false", VACUUM_LOGGING: "true"}
        with session_conf(self.spark, settings), committing(table.name, self.root, "vacuum"):
            self._dt(table).vacuum(float(retention_hours))
        return self._files_deleted_since(table, before)

    def _files_deleted_since(self, table: Table, version: int | None) -> int:
        from pyspark.sql import functions as F

        ends = (
            self._dt(table)
            .history(20)
            .where((F.col("operation") == "VACUUM END") & (F.col("version") > (-1 if version is None else version)))
            .orderBy(F.col("version").desc())
            .select("operationMetrics")
            .first()
        )
        if ends is None or not ends[0] or "numDeletedFiles" not in ends[0]:
            raise LakeError(f"{self.ident(table)}: VACUUM recorded no VACUUM END commit with numDeletedFiles")
        return int(ends[0]["numDeletedFiles"])


class SparkLeaseStore:
    """The lease row in a Unity Catalog table, through delta-spark (see echo.lake.lease)."""

    def __init__(self, lake: DeltaSparkLake) -> None:
        from echo.lake.tables import LAKE_LEASE

        self.lake = lake
        self.table = LAKE_LEASE

    def read(self) -> dict[str, Any] | None:
        if not self.lake.exists(self.table):
            return None
        rows = self.lake.read(self.table).collect()
        return rows[0].asDict() if rows else None

    def create(self, row: dict[str, Any]) -> bool:
        df = self.lake.spark.createDataFrame([row], self.table.schema)
        try:  # version 0 with the row, or nothing: a concurrent creator wins
            df.write.format("delta").mode("errorifexists").saveAsTable(self.lake.ident(self.table))
        except Exception:
            if self.read() is None:
                raise
            return False
        return True

    def swap(self, expected_holder: str, expected_state: str, row: dict[str, Any]) -> None:
        from echo.lake.lease import LeaseConflict

        src = self.lake.spark.createDataFrame([row], self.table.schema)
        cond = f"t.holder = {_sql(expected_holder)} AND t.state = {_sql(expected_state)}"
        try:
            (
                self.lake._dt(self.table).alias("t")
                .merge(src.alias("s"), "t.slot = s.slot")
                .whenMatchedUpdateAll(condition=cond)
                .execute()
            )  # fmt: skip
        except Exception as exc:  # io.delta.exceptions.ConcurrentModificationException family
            if "Concurrent" in type(exc).__name__ or "Concurrent" in str(exc):
                raise LeaseConflict(str(exc)) from None
            raise


def _sql(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"
