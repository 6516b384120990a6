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
        with committing(table.name, self.root, "delete"):
            self._dt(table).delete(predicate)
        return int(before)

    def purge(self, table: Table) -> None:
        # rewrites only the files with deletion vectors (none: a no-op); a new version, so
        # the VACUUM after it removes the old files
        if self.exists(table):
            with committing(table.name, self.root, "purge"):
                self.spark.sql(f"REORG TABLE {self.ident(table)} APPLY (PURGE)")

    def vacuum(self, table: Table, retention_hours: int) -> int:
        if not self.exists(table):
            return 0
        self.spark.conf.set("spark.databricks.delta.retentionDurationCheck.enabled", "false")
        with committing(table.name, self.root, "vacuum"):
            self._dt(table).vacuum(retention_hours)
        return 0
