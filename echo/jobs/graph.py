"""graph: silver/suggestions -> gold/suggestion_graph (nodes) and gold/suggestion_edges.

    python -m echo graph --lake DIR [--hash-dims 32 --doc-window-s 300 ...]
    spark-submit jobs/graph.py --lake DIR

Incremental like the other stages: only users with bronze events newer than the
``graph`` watermark are recomputed (from their current silver/suggestions rows), up to
the run the ``track`` stage has processed. Every node feature and every edge depends on
one user's suggestions only, so the result equals a full rebuild. A change of the
settings recomputes every user. See docs/graph.md.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from pyspark import StorageLevel
from pyspark.sql import functions as F

from echo.config import LakeConfig
from echo.graph.config import GraphConfig
from echo.jobs.common import stage_main
from echo.jobs.incremental import new_events, rewrite_users, stored_config_sha
from echo.jobs.state import latest_run, set_watermark, watermark
from echo.lake.partitioning import user_bucket
from echo.lake.tables import SUGGESTION_EDGES, SUGGESTION_GRAPH, SUGGESTIONS
from echo.progress import Progress
from echo.stages.graph import edges, nodes

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

    from echo.lake import Lake

STAGE = "graph"
#: The stage whose output (silver/suggestions) the graph reads: never past its watermark.
UPSTREAM = "track"


def config_sha(cfg: GraphConfig) -> str:
    text = json.dumps(cfg.content_settings(), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def users_to_recompute(lake: Lake, buckets: int, *, rebuild: bool) -> tuple[DataFrame, int, int]:
    """``(users[user_id, user_bucket], since_run, up_to_run)`` as in the pairs stage."""
    since = 0 if rebuild else watermark(lake, STAGE)
    up_to = min(latest_run(lake), watermark(lake, UPSTREAM))
    if rebuild:
        ids = lake.read(SUGGESTIONS).select("user_id").union(lake.read(SUGGESTION_GRAPH).select("user_id"))
    else:
        ids = new_events(lake, since, up_to).select("user_id")  # the new runs' days only
    up_to = max(up_to, since)
    users = ids.distinct().withColumn("user_bucket", user_bucket("user_id", buckets))
    return users, since, up_to


def execute(
    spark: SparkSession, lake: Lake, lake_cfg: LakeConfig, cfg: GraphConfig, *, progress: Progress
) -> dict[str, Any]:
    cfg.validate()
    lake.ensure(SUGGESTION_GRAPH)
    lake.ensure(SUGGESTION_EDGES)
    sha = config_sha(cfg)
    stored = stored_config_sha(lake, STAGE)
    rebuild = cfg.rebuild or (stored is not None and stored != sha)
    users, since, up_to = users_to_recompute(lake, lake.buckets, rebuild=rebuild)
    users = users.cache()
    source_version = lake.version(SUGGESTIONS) or 0
    try:
        n_users = users.count()
        progress.step(
            f"{'rebuild' if rebuild else f'runs {since + 1}..{up_to}'}: users to recompute",
            users=n_users,
        )
        if n_users == 0:
            set_watermark(lake, STAGE, up_to, {"users": 0, "config_sha": sha})
            return {"run_no": up_to, "users": 0, "rebuild": rebuild, "nodes_written": 0, "edges_written": 0}
        sugg = lake.read(SUGGESTIONS).join(F.broadcast(users.select("user_id")), on="user_id", how="left_semi")
        sugg = sugg.persist(StorageLevel.MEMORY_AND_DISK)
        info = {"echo.stage": STAGE, "echo.run_no": str(up_to), "echo.source_version": str(source_version)}
        try:
            labels = sugg.select("suggestion_id", "outcome")
            node_rows = (
                nodes(sugg, cfg)
                .join(labels, on="suggestion_id")
                .withColumn("source_version", F.lit(source_version).cast("long"))
                .withColumn("user_bucket", user_bucket("user_id", lake.buckets))
                .persist(StorageLevel.MEMORY_AND_DISK)
            )
            edge_rows = (
                edges(sugg, cfg)
                .withColumn("user_bucket", user_bucket("user_id", lake.buckets))
                .persist(StorageLevel.MEMORY_AND_DISK)
            )
            n_nodes, n_edges = node_rows.count(), edge_rows.count()
            by_type = {r[0]: int(r[1]) for r in edge_rows.groupBy("edge_type").count().collect()}
            progress.step("graph built", nodes=n_nodes, edges=n_edges)
            buckets = rewrite_users(lake, SUGGESTION_GRAPH, node_rows.select(*SUGGESTION_GRAPH.columns), users, info=info)
            rewrite_users(lake, SUGGESTION_EDGES, edge_rows.select(*SUGGESTION_EDGES.columns), users, info=info)
            node_rows.unpersist()
            edge_rows.unpersist()
        finally:
            sugg.unpersist()
        progress.step(
            "gold/suggestion_graph and gold/suggestion_edges committed",
            buckets=len(buckets),
            version=lake.version(SUGGESTION_GRAPH),
        )
    finally:
        users.unpersist()
    report = {"run_no": up_to, "users": n_users, "rebuild": rebuild, "nodes_written": n_nodes,
              "edges_written": n_edges, "edges_by_type": by_type, "buckets_rewritten": len(buckets),
              "source_version": source_version}  # fmt: skip
    set_watermark(lake, STAGE, up_to, {**report, "config_sha": sha})
    return report


def main(argv: Sequence[str] | None = None) -> int:
    return stage_main(argv, stage=STAGE, doc=__doc__ or "", section=GraphConfig, execute=execute)
