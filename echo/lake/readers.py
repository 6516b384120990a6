"""Reading a path lake's tables without Spark (delta-rs): for the loop, reports and
notebooks on one machine. Part of the Delta layer: nothing outside ``echo/lake`` opens a
table."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from echo.errors import LakeError
from echo.lake.base import is_uc, join_uri

if TYPE_CHECKING:
    import pyarrow as pa

    from echo.lake.tables import Table


def _open(root: str, table: Table) -> object:
    from deltalake import DeltaTable
    from deltalake.exceptions import TableNotFoundError

    if is_uc(root):
        raise LakeError(f"--lake {root}: read Unity Catalog lakes through Spark (echo.lake.open_lake)")
    try:
        return DeltaTable(join_uri(str(root), table.name))
    except TableNotFoundError:
        raise LakeError(f"{join_uri(str(root), table.name)} is not a Delta table (has its stage run?)") from None


def read_arrow(root: str, table: Table, columns: Sequence[str] | None = None) -> pa.Table:
    """The table's current snapshot as an Arrow table (``columns``: a projection)."""
    dt = _open(root, table)
    return dt.to_pyarrow_table(columns=list(columns) if columns else None)  # type: ignore[attr-defined]


def version(root: str, table: Table) -> int:
    """The table's current Delta version."""
    return int(_open(root, table).version())  # type: ignore[attr-defined]
