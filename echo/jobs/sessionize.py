"""sessionize: bronze/events -> silver/sessions (only users with new events).

    python -m echo sessionize --lake DIR [--session-gap-s 1800]
    spark-submit jobs/sessionize.py --lake DIR
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from echo.config import PipelineConfig
from echo.jobs.common import stage_main
from echo.jobs.incremental import affected_users, events_of, rewrite_users
from echo.jobs.state import set_watermark
from echo.lake.tables import SESSIONS
from echo.progress import Progress
from echo.stages.sessionize import sessionize

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from echo.config import LakeConfig
    from echo.lake import Lake

STAGE = "sessionize"


def execute(
    spark: SparkSession, lake: Lake, lake_cfg: LakeConfig, cfg: PipelineConfig, *, progress: Progress
) -> dict[str, Any]:
    lake.ensure(SESSIONS)
    users, since, up_to = affected_users(lake, STAGE, lake.buckets)
    users = users.cache()
    try:
        n_users = users.count()
        progress.step(f"runs {since + 1}..{up_to}: users with new events", users=n_users)
        if n_users == 0:
            set_watermark(lake, STAGE, up_to, {"users": 0})
            return {"users": 0, "sessions_written": 0, "run_no": up_to}
        sessions = sessionize(events_of(lake, users, up_to), gap_s=cfg.session_gap_s, buckets=lake.buckets)
        sessions = sessions.cache()
        n_sessions = sessions.count()
        buckets = rewrite_users(lake, SESSIONS, sessions, users, info={"echo.stage": STAGE, "echo.run_no": str(up_to)})
        sessions.unpersist()
        progress.step("silver/sessions committed", sessions=n_sessions, buckets=len(buckets),
                      version=lake.version(SESSIONS))  # fmt: skip
    finally:
        users.unpersist()
    detail = {"users": n_users, "sessions": n_sessions, "buckets": buckets, "version": lake.version(SESSIONS)}
    set_watermark(lake, STAGE, up_to, detail)
    return {"run_no": up_to, "users": n_users, "sessions_written": n_sessions, "buckets_rewritten": len(buckets)}


def main(argv: Sequence[str] | None = None) -> int:
    return stage_main(argv, stage=STAGE, doc=__doc__ or "", section=PipelineConfig, execute=execute)
