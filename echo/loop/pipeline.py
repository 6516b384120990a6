"""The real data pipeline on one round's telemetry: ingest, sessionize, track, pairs
(Spark + Delta), then the training shards, and the ablations' shards.

One Spark session serves the whole loop; each telemetry set gets its own lake.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from echo.config import LakeConfig, PipelineConfig
from echo.progress import Progress


def run_pipeline(
    spark: Any,
    batch_dirs: Sequence[Path],
    lake_dir: Path,
    *,
    pairs: bool,
    shards_out: Path | None = None,
    prefix_chars: int = 8192,
    suffix_chars: int = 2048,
    fim_mode: str = "psm",
    quiet: bool = True,
) -> dict[str, Any]:
    """Run the stages batch by batch into ``lake_dir``; the run reports of every stage.

    Every harvest user's pairs go to the train split: the loop measures on fresh users
    of its own, so a val/test split of the harvest would only waste the signal."""
    from echo.jobs import shards
    from echo.jobs.common import open_job_lake
    from echo.jobs.runner import PIPELINE, StageContext, run_stages
    from echo.pairs_config import PairsConfig, ShardsConfig

    lake_cfg = LakeConfig(lake=str(lake_dir))
    cfg, pcfg = PipelineConfig(), PairsConfig(train_ratio=1.0, val_ratio=0.0, test_ratio=0.0)
    with open_job_lake(spark, lake_cfg, create=True, command="loop", quiet=quiet) as lake:
        reports: list[dict[str, Any]] = []
        stages = PIPELINE if pairs else PIPELINE[:-1]
        for batch in batch_dirs:
            ctx = StageContext(spark, lake, lake_cfg, cfg, pcfg, events=(str(batch),), quiet=quiet)
            reports.append({"batch": batch.name, **run_stages(ctx, stages)})
        out: dict[str, Any] = {"lake": str(lake_dir), "batches": reports}
        if shards_out is not None:
            scfg = ShardsConfig(out=str(shards_out), max_prefix_chars=prefix_chars, max_suffix_chars=suffix_chars,
                                fim_mode=fim_mode)  # fmt: skip
            out["shards"] = shards.execute(spark, lake, lake_cfg, scfg, progress=Progress("shards", quiet=quiet))
    return out


def ablation_shards(echo_shards: Path, lake_dir: Path, out: Path, target: str) -> dict[str, Any]:
    """The Echo shards' SFT train rows with the completion swapped for the raw log.

    ``target``: ``accepted`` (the text as the user accepted it, before any refinement:
    silver/suggestions.accepted_text) or ``shown`` (the proposal as shown). Same pairs,
    prompts and weights as Echo: only the training target differs.
    """
    import shutil

    import pyarrow as pa
    import pyarrow.parquet as pq

    from echo.lake.readers import read_arrow
    from echo.lake.tables import SUGGESTIONS
    from echo.shards.manifest import Manifest, describe_shard, load_manifest, write_manifest

    manifest = load_manifest(echo_shards)
    sugg = read_arrow(str(lake_dir), SUGGESTIONS, ["suggestion_id", "accepted_text", "proposal"]).to_pydict()
    accepted = dict(zip(sugg["suggestion_id"], sugg["accepted_text"], strict=True))
    if out.exists():
        shutil.rmtree(out)
    entries = []
    changed = rows = 0
    for e in manifest.select("sft", "train"):
        table = pq.read_table(echo_shards / e.path)
        d = table.to_pydict()
        if target == "accepted":
            new = [accepted.get(s) or p for s, p in zip(d["suggestion_id"], d["proposal"], strict=True)]
        else:
            new = [p or "" for p in d["proposal"]]
        changed += sum(a != b for a, b in zip(new, d["completion"], strict=True))
        rows += len(new)
        idx = table.schema.get_field_index("completion")
        table = table.set_column(idx, table.schema.field(idx), pa.array(new, type=pa.string()))
        (out / e.path).parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, out / e.path)
        entries.append(describe_shard(out, e.path, "sft", "train"))
    write_manifest(out, Manifest(
        shards=tuple(entries), config={**manifest.config, "ablation": target}, fim=manifest.fim,
        source={**manifest.source, "ablation_of": str(echo_shards)}, created_at=manifest.created_at,
    ))  # fmt: skip
    return {"rows": rows, "targets_changed": changed}
