"""How the lake partitions its tables: the lake-wide rules every stage and job shares."""

from __future__ import annotations

from pyspark.sql import Column
from pyspark.sql import functions as F


def user_bucket(user_id: Column | str, buckets: int) -> Column:
    """Stable bucket of a user: ``pmod(xxhash64(user_id), buckets)`` (same on any cluster).
    ``buckets`` is the lake's invariant (``Lake.buckets``), fixed when the lake is created."""
    col = F.col(user_id) if isinstance(user_id, str) else user_id
    return F.pmod(F.xxhash64(col), F.lit(buckets)).cast("int")
