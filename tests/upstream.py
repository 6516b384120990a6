"""Helpers for the pairs/shards/forget tests: a lake fed batch by batch with bronze events
and the silver/suggestions rows the track stage would write for them (no tests here)."""

from __future__ import annotations

import datetime
import json
from typing import Any

from pyspark.sql import functions as F

from echo.jobs.incremental import replace_rows
from echo.jobs.state import set_watermark
from echo.lake import Lake, open_lake
from echo.lake.lease import hold
from echo.lake.partitioning import user_bucket
from echo.lake.tables import EVENTS, INGEST_RUNS, ORPHAN_DAY, SUGGESTION_CHANGES, SUGGESTIONS
from echo.pairs_config import PairsConfig
from echo.progress import Progress
from echo.stages.retention import RETENTION_COLUMNS

BUCKETS = 4
T0 = 1_700_000_000_000
PREFIX = "def total_price(items, tax):\n    subtotal = sum(i.price for i in items)\n    "
SUFFIX = "\n    return result\n"


def suggestion(
    sid: str,
    user: str,
    *,
    outcome: str = "kept",
    proposal: str = "result = subtotal * (1 + tax)",
    final: str | None = None,
    prefix: str | None = PREFIX,
    suffix: str | None = SUFFIX,
    ts: int = T0,
    similarity: float | None = None,
    survival_s: float = 600.0,
    typed: str | None = None,
) -> dict[str, Any]:
    final_text = proposal if final is None and outcome == "kept" else final
    return {
        "suggestion_id": sid,
        "session_id": f"{user}/{ts}",
        "user_id": user,
        "doc_id": f"{user}/doc",
        "model_id": "m1",
        "language": "python",
        "shown_ts_ms": ts,
        "proposal": proposal,
        "accepted_text": proposal,
        "final_text": final_text,
        "outcome": outcome,
        "edit_similarity": (1.0 if outcome == "kept" else similarity)
        if final_text is not None
        else None,
        "prefix": prefix,
        "suffix": suffix,
        "shown_offset": 10,
        "latency_ms": 50,
        "accepted_ts_ms": ts + 1000 if final_text is not None else None,
        "accepted_doc_version": 1,
        "horizon_ts_ms": ts + 1000 + int(survival_s * 1000) if final_text is not None else None,
        "walk_end": "horizon" if final_text is not None else None,
        "changes_applied": 0,
        "accepted_chars": len(proposal),
        "retained_chars": len(proposal),
        "typed_text": typed,
        "typed_end_ts_ms": ts + 5000 if typed is not None else None,
        "typed_end": "lines" if typed is not None else None,
        **{c: (len(proposal) if final_text is not None else None) for c in RETENTION_COLUMNS},
        "user_bucket": 0,
        "day": ORPHAN_DAY if outcome == "orphan" else _day(ts),
    }


def _day(ts_ms: int) -> datetime.date:
    return datetime.datetime.fromtimestamp(ts_ms / 1000, datetime.timezone.utc).date()


class FakeUpstream:
    """Writes what ingest + track would: one bronze ``shown`` event per suggestion row
    (run ``run_no``), the users' silver/suggestions rows, and the track watermark."""

    def __init__(self, spark: Any, root: str, backend: str = "delta-rs") -> None:
        self.spark = spark
        self.lake: Lake = open_lake(spark, root, backend)
        self.lake.check_root(create=True)
        hold(self.lake, "test-upstream", buckets=BUCKETS).release()  # the lake's invariants
        self.rows: dict[tuple[str, str], dict[str, Any]] = {}
        self.run_no = 0

    def batch(self, rows: list[dict[str, Any]]) -> None:
        """One run: the rows replace the stored rows of their suggestions (as track's
        replay would), recorded in _echo/suggestion_changes like track records them."""
        self.run_no += 1
        now = datetime.datetime.now(datetime.timezone.utc)
        events = []
        key = lambda r: (r["suggestion_id"], r["doc_id"])  # noqa: E731
        old_rows = [self.rows[key(r)] for r in rows if key(r) in self.rows]
        for r in rows:
            self.rows[key(r)] = r
            ev: dict[str, Any] = {f.name: None for f in EVENTS.schema.fields}
            ev.update(
                event_id=f"e-{r['suggestion_id']}-{self.run_no}", event_type="shown", ts_ms=r["shown_ts_ms"],
                user_id=r["user_id"], doc_id=r["doc_id"], doc_version=0, suggestion_id=r["suggestion_id"],
                model_id=r["model_id"], text=r["proposal"], prefix=r["prefix"], suffix=r["suffix"],
                ingested_at=now, content_hash="h", source="test", run_no=self.run_no, event_date=_day(r["shown_ts_ms"]),
            )  # fmt: skip
            events.append(ev)
        self.lake.append(EVENTS, self.spark.createDataFrame(events, EVENTS.schema))
        # the run record publishes the run (echo.jobs.state): stages read up to it
        dates = sorted({str(e["event_date"]) for e in events})
        record = (self.run_no, now, now, "[]", len(events), len(events), 0, 0, "{}", "{}", json.dumps(dates))
        self.lake.append(INGEST_RUNS, self.spark.createDataFrame([record], INGEST_RUNS.schema))
        for t in (SUGGESTIONS, SUGGESTION_CHANGES):
            self.lake.ensure(t)
        latest = list({key(r): r for r in rows}.values())  # a row given twice: the last one
        new = self.spark.createDataFrame(latest, SUGGESTIONS.schema).withColumn(
            "user_bucket", user_bucket("user_id", BUCKETS)
        )
        keys = ["suggestion_id", "doc_id", "user_id", "day"]
        touched = [{k: r[k] for k in keys} for r in old_rows + rows]
        changes = self.spark.createDataFrame(touched, "suggestion_id string, doc_id string, user_id string, day date")
        days = sorted({r["day"] for r in touched})
        self.lake.replace_partitions(
            SUGGESTION_CHANGES, changes.withColumn("run_no", F.lit(self.run_no).cast("long")), [self.run_no]
        )
        replace_rows(self.lake, SUGGESTIONS, new.select(*SUGGESTIONS.columns), changes, days, keys=["suggestion_id", "doc_id"])
        set_watermark(self.lake, "track", self.run_no, {})


def run_pairs(up: FakeUpstream, cfg: PairsConfig | None = None) -> dict[str, Any]:
    from echo.config import LakeConfig
    from echo.jobs.pairs import execute

    lake_cfg = LakeConfig(lake=up.lake.root, lake_backend=up.lake.backend_name, buckets=BUCKETS)
    return execute(
        up.spark, up.lake, lake_cfg, cfg or PairsConfig(), progress=Progress("pairs", quiet=True)
    )


def gold_rows(
    up: FakeUpstream, drop: tuple[str, ...] = ("source_version",)
) -> list[tuple[Any, ...]]:
    from echo.lake.tables import REFINEMENT_PAIRS

    cols = [c for c in REFINEMENT_PAIRS.columns if c not in drop]
    return sorted(tuple(r) for r in up.lake.read(REFINEMENT_PAIRS).select(*cols).collect())
