"""Spark schema -> Arrow schema, the one conversion every Arrow path uses (delta-rs
commits, ``applyInArrow``/``mapInArrow`` outputs)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pyarrow as pa

if TYPE_CHECKING:
    from pyspark.sql.types import StructType

    from echo.lake.tables import Table

#: Spark SQL type (``simpleString``) -> Arrow type, for the types Echo's tables use.
SPARK_TO_ARROW: dict[str, pa.DataType] = {
    "string": pa.string(),
    "bigint": pa.int64(),
    "int": pa.int32(),
    "double": pa.float64(),
    "date": pa.date32(),
    "timestamp": pa.timestamp("us", tz="UTC"),
    "binary": pa.binary(),
    "boolean": pa.bool_(),
    "array<double>": pa.list_(pa.field("element", pa.float64(), nullable=True)),
}


def to_arrow_schema(schema: StructType, *, all_nullable: bool = False) -> pa.Schema:
    """The Arrow schema of a Spark ``StructType`` (``all_nullable`` for UDF outputs)."""
    return pa.schema(
        [
            pa.field(f.name, SPARK_TO_ARROW[f.dataType.simpleString()], True if all_nullable else f.nullable)
            for f in schema.fields
        ]
    )


def arrow_schema(table: Table) -> pa.Schema:
    """The Arrow schema of a lake table."""
    return to_arrow_schema(table.schema)
