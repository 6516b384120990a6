"""One Stage protocol and one runner: the pipeline's order, written once.

A :class:`Stage` names what it reads and writes and runs as ``execute(ctx) -> report``
with one :class:`StageContext` (the session, the held lake, the resolved configs, the
inputs, progress). :func:`run_stages` runs stages in order; ``run``, the demo, the
experience loop, spark-submit (``jobs/run.py``) and the notebooks all go through it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from echo.config import LakeConfig, PipelineConfig
from echo.jobs.common import config_json
from echo.lake.tables import (
    ACCEPTANCE_METRICS,
    EVENTS,
    FEEDBACK,
    FORGOTTEN_USERS,
    INGEST_RUNS,
    QUARANTINE,
    REFINEMENT_PAIRS,
    SESSIONS,
    STAGE_STATE,
    SUGGESTIONS,
    TYPED_PAIRS,
    Table,
)
from echo.pairs_config import PairsConfig
from echo.progress import Progress

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from echo.lake import Lake


@dataclass(frozen=True)
class StageContext:
    """Everything a stage gets: the session, the lake (held by this run), the resolved
    configs, the batch's input paths (ingest), and progress output."""

    spark: SparkSession
    lake: Lake
    lake_cfg: LakeConfig
    pipeline: PipelineConfig = field(default_factory=PipelineConfig)
    pairs: PairsConfig = field(default_factory=PairsConfig)
    events: tuple[str, ...] = ()
    quiet: bool = False

    def progress(self, stage: str) -> Progress:
        return Progress(stage, quiet=self.quiet)

    def config_text(self) -> str:
        """The resolved config as JSON (stored with each ingest run)."""
        return config_json(self.lake_cfg, self.pipeline, self.pairs)


@dataclass(frozen=True)
class Stage:
    """A pipeline stage: its name, the tables it reads and writes, and how it runs."""

    name: str
    reads: tuple[Table, ...]
    writes: tuple[Table, ...]
    execute: Callable[[StageContext], dict[str, Any]]

    def __call__(self, ctx: StageContext) -> dict[str, Any]:
        return self.execute(ctx)


def _ingest(ctx: StageContext) -> dict[str, Any]:
    from echo.jobs import ingest

    return ingest.execute(ctx.spark, ctx.lake, list(ctx.events), ctx.pipeline,
                          progress=ctx.progress("ingest"), config_text=ctx.config_text())  # fmt: skip


def _sessionize(ctx: StageContext) -> dict[str, Any]:
    from echo.jobs import sessionize

    return sessionize.execute(ctx.spark, ctx.lake, ctx.lake_cfg, ctx.pipeline, progress=ctx.progress("sessionize"))


def _track(ctx: StageContext) -> dict[str, Any]:
    from echo.jobs import track

    return track.execute(ctx.spark, ctx.lake, ctx.lake_cfg, ctx.pipeline, progress=ctx.progress("track"))


def _pairs(ctx: StageContext) -> dict[str, Any]:
    from echo.jobs import pairs

    return pairs.execute(ctx.spark, ctx.lake, ctx.lake_cfg, ctx.pairs, progress=ctx.progress("pairs"))


INGEST = Stage("ingest", reads=(EVENTS, QUARANTINE, FORGOTTEN_USERS, STAGE_STATE),
               writes=(QUARANTINE, EVENTS, INGEST_RUNS, STAGE_STATE), execute=_ingest)  # fmt: skip
SESSIONIZE = Stage("sessionize", reads=(EVENTS, SESSIONS, STAGE_STATE), writes=(SESSIONS, STAGE_STATE), execute=_sessionize)
TRACK = Stage("track", reads=(EVENTS, SUGGESTIONS, STAGE_STATE),
              writes=(SUGGESTIONS, ACCEPTANCE_METRICS, STAGE_STATE), execute=_track)  # fmt: skip
PAIRS = Stage("pairs", reads=(SUGGESTIONS, EVENTS, REFINEMENT_PAIRS, FEEDBACK, TYPED_PAIRS, STAGE_STATE),
              writes=(REFINEMENT_PAIRS, FEEDBACK, TYPED_PAIRS, STAGE_STATE), execute=_pairs)  # fmt: skip

#: The data pipeline, in order (CONTRACT.md section 6: ``run``).
PIPELINE: tuple[Stage, ...] = (INGEST, SESSIONIZE, TRACK, PAIRS)
STAGES_BY_NAME = {s.name: s for s in PIPELINE}


def run_stages(ctx: StageContext, stages: Sequence[Stage] = PIPELINE) -> dict[str, dict[str, Any]]:
    """Run ``stages`` in order on one context; the report of each, by stage name."""
    return {stage.name: stage(ctx) for stage in stages}
