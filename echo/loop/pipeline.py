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
    together: bool = False,
) -> dict[str, Any]:
    """Run the stages batch by batch into ``lake_dir`` (``together``: all batches in one
    run); the run reports of every stage.

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
        runs = [list(batch_dirs)] if together else [[b] for b in batch_dirs]
        for batches in runs:
            events = tuple(str(b) for b in batches)
            ctx = StageContext(spark, lake, lake_cfg, cfg, pcfg, events=events, quiet=quiet)
            reports.append({"batch": ",".join(b.name for b in batches), **run_stages(ctx, stages)})
        out: dict[str, Any] = {"lake": str(lake_dir), "batches": reports}
        if shards_out is not None:
            scfg = ShardsConfig(out=str(shards_out), max_prefix_chars=prefix_chars, max_suffix_chars=suffix_chars,
                                fim_mode=fim_mode)  # fmt: skip
            out["shards"] = shards.execute(spark, lake, lake_cfg, scfg, progress=Progress("shards", quiet=quiet))
    return out


def early_forecast(spark: Any, lake_dir: Path, *, epochs: int, seed: int, quiet: bool = True) -> dict[str, Any]:
    """The ``graph`` stage on a lake, then the outcome forecaster's early forecast of
    refine and delete rates per model, checked by backtest (:func:`echo.graph.forecast.early_backtest`:
    trained as of half-way through the lake, its forecast for the suggestions still open
    then, against what they measured later and against the naive rates closed by then).
    A dict with ``skipped`` (the reason) when the lake has too little to train on."""
    from echo.graph.config import ForecastConfig, GraphConfig
    from echo.graph.forecast import early_backtest, forecaster_name
    from echo.jobs import graph
    from echo.jobs.common import open_job_lake
    from echo.lake.readers import read_arrow
    from echo.lake.tables import SUGGESTION_EDGES, SUGGESTION_GRAPH

    lake_cfg = LakeConfig(lake=str(lake_dir))
    with open_job_lake(spark, lake_cfg, command="loop", quiet=quiet) as lake:
        built = graph.execute(spark, lake, lake_cfg, GraphConfig(), progress=Progress("graph", quiet=quiet))
    cols = ["suggestion_id", "model_id", "shown_ts_ms", "accepted_ts_ms", "known_ts_ms", "outcome", "features"]
    nodes = read_arrow(str(lake_dir), SUGGESTION_GRAPH, cols).to_pandas()
    edges = read_arrow(str(lake_dir), SUGGESTION_EDGES, ["src_id", "dst_id"]).to_pandas()
    fcfg = ForecastConfig(epochs=epochs, seed=seed)
    out: dict[str, Any] = {"forecaster": forecaster_name(fcfg), "nodes": len(nodes), "edges": len(edges),
                           "graph_users": built.get("users")}  # fmt: skip
    try:
        return {**out, **early_backtest(nodes, edges, fcfg)}
    except ValueError as e:  # too few closed suggestions to train on
        return {**out, "skipped": str(e)}


def ablation_shards(echo_shards: Path, lake_dir: Path, out: Path, target: str) -> dict[str, Any]:
    """The Echo shards' SFT train rows with the completion swapped for the raw log, or
    with the typed-instead rows added.

    ``target``: ``accepted`` (the text as the user accepted it, before any refinement:
    silver/suggestions.accepted_text) or ``shown`` (the proposal as shown): same pairs,
    prompts and weights as Echo, only the training target differs. ``typed``: Echo's rows
    unchanged plus one row per typed-instead preference pair of the pref shards (prompt,
    completion = what the user typed, its weight).
    """
    import shutil

    import pyarrow as pa
    import pyarrow.parquet as pq

    from echo.lake.readers import read_arrow
    from echo.lake.tables import SUGGESTIONS
    from echo.shards.manifest import Manifest, describe_shard, load_manifest, write_manifest

    manifest = load_manifest(echo_shards)
    sugg = read_arrow(str(lake_dir), SUGGESTIONS, ["suggestion_id", "accepted_text", "prefix", "suffix"]).to_pydict()
    accepted = dict(zip(sugg["suggestion_id"], sugg["accepted_text"], strict=True))
    if out.exists():
        shutil.rmtree(out)
    entries = []
    changed = rows = 0
    for e in manifest.select("sft", "train"):
        table = pq.read_table(echo_shards / e.path)
        d = table.to_pydict()
        if target == "typed":
            new = list(d["completion"])
        elif target == "accepted":
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
    if target == "typed":
        schema = pq.read_schema(echo_shards / manifest.select("sft", "train")[0].path)
        context = dict(zip(sugg["suggestion_id"], zip(sugg["prefix"], sugg["suffix"], strict=True), strict=True))
        typed = _typed_sft_rows(echo_shards, manifest, schema, context)
        rel = "sft/train/typed-instead.parquet"
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(typed, out / rel)
        entries.append(describe_shard(out, rel, "sft", "train"))
        rows += typed.num_rows
        changed += typed.num_rows
    write_manifest(out, Manifest(
        shards=tuple(entries), config={**manifest.config, "ablation": target}, fim=manifest.fim,
        source={**manifest.source, "ablation_of": str(echo_shards)}, created_at=manifest.created_at,
    ))  # fmt: skip
    return {"rows": rows, "targets_changed": changed}


def _typed_sft_rows(
    shards: Path, manifest: Any, schema: Any, context: dict[str, tuple[str | None, str | None]]
) -> Any:
    """The pref shards' typed-instead rows (``source == "typed"``) as SFT rows of
    ``schema``: prompt, completion = what the user typed, weight, proposal; prefix and
    suffix from silver/suggestions (``context``), clipped as the shards clip them."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from echo.stages.shards import clip_prefix, clip_suffix

    parts = [pq.read_table(shards / e.path) for e in manifest.select("pref", "train")]
    pref = pa.concat_tables(parts) if parts else None
    if pref is None or pref.num_rows == 0:
        return schema.empty_table()
    typed = pref.filter(pc.equal(pref["source"], "typed"))
    ids = typed["suggestion_id"].to_pylist()
    pre = int(manifest.config.get("max_prefix_chars", 0) or 0)
    suf = int(manifest.config.get("max_suffix_chars", 0) or 0)
    cols = {
        "completion": typed["chosen"], "proposal": typed["rejected"],
        "prefix": pa.array([clip_prefix(context.get(i, (None, None))[0], pre) for i in ids], pa.string()),
        "suffix": pa.array([clip_suffix(context.get(i, (None, None))[1], suf) for i in ids], pa.string()),
    }  # fmt: skip
    arrays = []
    for f in schema:
        col = cols.get(f.name, typed[f.name] if f.name in typed.column_names else None)
        arrays.append(pa.nulls(typed.num_rows, f.type) if col is None else col.cast(f.type))
    return pa.Table.from_arrays(arrays, schema=schema)
