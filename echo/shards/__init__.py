"""Training shards: balanced Parquet files plus ``manifest.json`` (see docs/shards.md)."""
