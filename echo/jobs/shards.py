"""shards: gold/refinement_pairs + gold/feedback -> training shards (Parquet) + manifest.json.

    python -m echo shards --lake DIR --out DIR [--workers 4 | --num-shards 8]
    spark-submit jobs/shards.py --lake DIR --out DIR

Writes ``sft/{train,val,test}/part-NNNNN.parquet`` (prompt/completion) and
``pref/{train,val,test}/...`` (prompt/chosen/rejected, from refined pairs and from
gold/typed_pairs when present, with a ``source`` column), ``kto/{train,val,test}/...``
(prompt/completion/label, TRL's unpaired format, from gold/feedback; empty when the lake
has no such table yet) with balanced row counts, and ``manifest.json`` (rows, bytes, sha256 per file, lake versions read,
resolved settings). Spark writes the rows into a temporary sibling directory that is
renamed into place, so readers see the old shards or the new ones, never a mix.
See docs/pairs.md.
"""

from __future__ import annotations

import datetime
import os
import shutil
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pyspark import StorageLevel

from echo.config import LakeConfig, to_dict
from echo.errors import ConfigError, LakeError
from echo.jobs.common import stage_main
from echo.lake.base import spark_uri
from echo.lake.tables import FEEDBACK, REFINEMENT_PAIRS, SUGGESTIONS, TYPED_PAIRS
from echo.pairs_config import ShardsConfig
from echo.progress import Progress
from echo.shards.manifest import MANIFEST_NAME, Manifest, ShardEntry, describe_shard, write_manifest
from echo.stages.pairs import SPLITS
from echo.stages.shards import (
    FORMATS,
    PREF_SOURCES,
    dedupe,
    kto_rows,
    pref_rows,
    sft_rows,
    typed_pref_rows,
    with_shard_index,
)

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

    from echo.lake import Lake

STAGE = "shards"


def _out_path(out: str) -> Path:
    return Path(out[len("file://") :] if out.startswith("file://") else out).absolute()


def check_out_dir(out: Path) -> None:
    """Refuse to replace anything but a shards directory (or nothing, or an empty dir)."""
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file, not a directory")
    if out.is_dir() and any(out.iterdir()) and not (out / MANIFEST_NAME).is_file():
        raise ConfigError(
            f"--out {out} is not empty and holds no {MANIFEST_NAME}: refusing to replace it"
        )


def _empty_shard(path: Path, fmt: str) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    types = {"weight": pa.float64(), "label": pa.bool_()}
    schema = pa.schema([pa.field(c, types.get(c, pa.string())) for c in FORMATS[fmt]])
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(schema.empty_table(), path)


def _write_format(rows: DataFrame, fmt: str, n_shards: int, tmp: Path) -> list[ShardEntry]:
    """Write one format's rows under ``tmp/fmt/split/part-NNNNN.parquet``; one file per
    (split, shard index), each written by one Spark task."""
    staging = tmp / f"_spark_{fmt}"
    indexed = with_shard_index(rows, n_shards)
    (
        indexed.repartition(n_shards * len(SPLITS), "split", "_shard")
        .sortWithinPartitions("split", "_shard", "suggestion_id")
        .write.partitionBy("split", "_shard")
        .parquet(spark_uri(str(staging)))
    )
    entries: list[ShardEntry] = []
    for split in SPLITS:
        split_dir = staging / f"split={split}"
        parts = (
            sorted(split_dir.glob("_shard=*"), key=lambda p: int(p.name.split("=", 1)[1]))
            if split_dir.is_dir()
            else []
        )
        if not parts:
            rel = f"{fmt}/{split}/part-00000.parquet"
            _empty_shard(tmp / rel, fmt)
            entries.append(describe_shard(tmp, rel, fmt, split))
            continue
        for i, part_dir in enumerate(parts):
            files = sorted(part_dir.glob("*.parquet"))
            if len(files) != 1:
                raise LakeError(f"expected one file per shard in {part_dir}, found {len(files)}")
            rel = f"{fmt}/{split}/part-{i:05d}.parquet"
            (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
            os.replace(files[0], tmp / rel)
            entries.append(describe_shard(tmp, rel, fmt, split))
    shutil.rmtree(staging)
    return entries


def _write_kto(
    lake: Lake, cfg: ShardsConfig, n_shards: int, tmp: Path
) -> tuple[dict[str, Any], int | None]:
    """The ``kto/`` shards from gold/feedback (deduplicated like the pairs), or empty
    ones when the lake has no gold/feedback (a lake from before it existed); with the
    table version read and the counts."""
    if not lake.exists(FEEDBACK):
        entries: list[ShardEntry] = []
        for split in SPLITS:
            rel = f"kto/{split}/part-00000.parquet"
            _empty_shard(tmp / rel, "kto")
            entries.append(describe_shard(tmp, rel, "kto", split))
        return {"entries": entries, "rows": 0, "gold_rows": 0, "near_duplicates": 0,
                "by_label": {}}, None  # fmt: skip
    version = lake.version(FEEDBACK)
    gold = lake.read(FEEDBACK)
    rows = (dedupe(gold) if cfg.dedup else gold).persist(StorageLevel.MEMORY_AND_DISK)
    try:
        n_gold, n_rows = gold.count(), rows.count()
        by_label = {
            (r[0], bool(r[1])): int(r[2]) for r in rows.groupBy("split", "label").count().collect()
        }
        entries = _write_format(kto_rows(rows, cfg), "kto", n_shards, tmp)
    finally:
        rows.unpersist()
    return {"entries": entries, "rows": n_rows, "gold_rows": n_gold,
            "near_duplicates": n_gold - n_rows, "by_label": by_label}, version  # fmt: skip


def swap_into_place(tmp: Path, out: Path) -> None:
    """Rename ``tmp`` to ``out``; an existing ``out`` is moved aside first and removed after."""
    if out.exists():
        old = out.with_name(f".{out.name}.old-{uuid.uuid4().hex[:8]}")
        os.rename(out, old)
        os.rename(tmp, out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.rename(tmp, out)


def execute(
    spark: SparkSession,
    lake: Lake,
    lake_cfg: LakeConfig,
    cfg: ShardsConfig,
    *,
    progress: Progress,
) -> dict[str, Any]:
    out = _out_path(cfg.out)
    check_out_dir(out)
    if not lake.exists(REFINEMENT_PAIRS):
        raise LakeError(f"{lake.path(REFINEMENT_PAIRS)} does not exist: run 'pairs' first")
    version = lake.version(REFINEMENT_PAIRS)
    n_shards = cfg.shards_per_split
    gold = lake.read(REFINEMENT_PAIRS)
    pairs = (dedupe(gold) if cfg.dedup else gold).persist(StorageLevel.MEMORY_AND_DISK)
    typed_version = lake.version(TYPED_PAIRS) if lake.exists(TYPED_PAIRS) else None
    typed_gold = lake.read(TYPED_PAIRS) if typed_version is not None else lake.empty(TYPED_PAIRS)
    typed = (dedupe(typed_gold) if cfg.dedup else typed_gold).persist(StorageLevel.MEMORY_AND_DISK)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp-{uuid.uuid4().hex[:8]}")
    tmp.mkdir()
    try:
        n_gold = gold.count()
        n_pairs = pairs.count()
        progress.step(
            "read gold/refinement_pairs",
            version=version,
            rows=n_gold,
            near_duplicates=n_gold - n_pairs,
        )
        source_versions = sorted(
            int(r[0]) for r in pairs.select("source_version").distinct().collect()
        )
        n_typed_gold = typed_gold.count()
        n_typed = typed.count()
        pref = pref_rows(pairs, cfg).unionByName(typed_pref_rows(typed, cfg)).persist(StorageLevel.MEMORY_AND_DISK)
        by_source = {r[0]: int(r[1]) for r in pref.groupBy("source").count().collect()}
        pref_by_source = {src: by_source.get(src, 0) for src in PREF_SOURCES}
        entries: list[ShardEntry] = []
        for fmt, rows_df in (("sft", sft_rows(pairs, cfg)), ("pref", pref)):
            entries += _write_format(rows_df, fmt, n_shards, tmp)
            progress.step(f"{fmt} shards written", files=sum(1 for e in entries if e.format == fmt))
        pref.unpersist()
        kto, feedback_version = _write_kto(lake, cfg, n_shards, tmp)
        entries += kto["entries"]
        progress.step("kto shards written", files=len(kto["entries"]), rows=kto["rows"])
        manifest = Manifest(
            shards=tuple(entries),
            config=to_dict(lake_cfg, cfg),
            fim=cfg.fim,
            source={
                "lake": lake.root,
                "tables": {
                    REFINEMENT_PAIRS.name: version,
                    TYPED_PAIRS.name: typed_version,
                    SUGGESTIONS.name: lake.version(SUGGESTIONS),
                    FEEDBACK.name: feedback_version,
                },
                "feedback_rows": kto["gold_rows"],
                "feedback_near_duplicates_dropped": kto["near_duplicates"],
                "typed_gold_rows": n_typed_gold,
                "typed_near_duplicates_dropped": n_typed_gold - n_typed,
                "pref_rows_by_source": pref_by_source,
                "pairs_source_versions": source_versions,
                "gold_rows": n_gold,
                "near_duplicates_dropped": n_gold - n_pairs,
            },
            created_at=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        )
        write_manifest(tmp, manifest)
        swap_into_place(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        pairs.unpersist()
        typed.unpersist()
    rows = {
        fmt: {s: sum(e.rows for e in manifest.select(fmt, s)) for s in SPLITS} for fmt in FORMATS
    }
    files = {fmt: {s: len(manifest.select(fmt, s)) for s in SPLITS} for fmt in FORMATS}
    progress.step(f"shards in {out}", files=len(entries))
    return {
        "out": str(out),
        "gold_version": version,
        "gold_rows": n_gold,
        "near_duplicates_dropped": n_gold - n_pairs,
        "typed_gold_rows": n_typed_gold,
        "pref_rows_by_source": pref_by_source,
        "rows": rows,
        "files": files,
        "bytes": sum(e.bytes for e in entries),
        "manifest_sha256": manifest.sha256,
        "kto": {
            "feedback_version": feedback_version,
            "gold_rows": kto["gold_rows"],
            "near_duplicates_dropped": kto["near_duplicates"],
            "by_label": {
                s: {"desirable": kto["by_label"].get((s, True), 0),
                    "undesirable": kto["by_label"].get((s, False), 0)}
                for s in SPLITS
            },
        },
    }


def main(argv: Sequence[str] | None = None) -> int:
    return stage_main(argv, stage=STAGE, doc=__doc__ or "", section=ShardsConfig, execute=execute)
