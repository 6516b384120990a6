"""forget: delete a user's rows from every table, then vacuum the removed files.

    python -m echo forget --user ID [--user ID ...] --lake DIR

Deletes the user's rows from bronze/events, bronze/quarantine (records whose
``event_id`` is one of the user's events, or whose raw text holds the user id as a JSON
string), silver/sessions, silver/suggestions, gold/refinement_pairs, gold/feedback and the
incremental state (_echo/session_changes, _echo/doc_days, _echo/suggestion_changes);
recomputes the
days of gold/acceptance_metrics the user's suggestions counted in; vacuums every
touched table with retention 0, so the old Parquet files holding the rows are gone
from storage (time travel to versions before the forget is gone too). Before the vacuum,
each table is purged (:meth:`echo.lake.Lake.purge`): on delta-spark with deletion vectors
a DELETE only marks rows, and ``REORG TABLE ... APPLY (PURGE)`` rewrites those files.

The user is first recorded (as ``sha256(user_id)``) in ``_echo/forgotten_users``. Bronze
is deleted as well, so later runs cannot rebuild the rows; a re-ingest of an old input
file that holds the user's events would bring them back, so ingest drops them
(:func:`echo.stages.ingest.drop_forgotten_users`, called by :mod:`echo.jobs.ingest`).
See docs/pairs.md.
"""

from __future__ import annotations

import datetime
import hashlib
import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from pyspark.sql import functions as F

from echo.config import LakeConfig, add_flag
from echo.errors import ConfigError
from echo.jobs.common import emit_report, job_parser, open_job_lake, parse
from echo.lake.base import in_predicate
from echo.lake.tables import (
    ACCEPTANCE_METRICS,
    DOC_DAYS,
    EVENTS,
    FEEDBACK,
    FORGOTTEN_USERS,
    OUTCOME_PREDICTIONS,
    QUARANTINE,
    REFINEMENT_PAIRS,
    SESSION_CHANGES,
    SESSIONS,
    SUGGESTION_CHANGES,
    SUGGESTION_EDGES,
    SUGGESTION_GRAPH,
    SUGGESTIONS,
    TRACK_STATE,
    TYPED_PAIRS,
    Table,
)
from echo.progress import Progress
from echo.spark import spark_session
from echo.stages.ingest import raw_naming

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from echo.lake import Lake

STAGE = "forget"


#: Tables with a user_id column, deleted by user id.
USER_TABLES: tuple[Table, ...] = (
    EVENTS, SESSIONS, SUGGESTIONS, REFINEMENT_PAIRS, FEEDBACK, TYPED_PAIRS, SESSION_CHANGES, DOC_DAYS,
    TRACK_STATE, SUGGESTION_CHANGES, SUGGESTION_GRAPH, SUGGESTION_EDGES, OUTCOME_PREDICTIONS,
)  # fmt: skip
_CHUNK = 500


def user_hash(user_id: str) -> str:
    return hashlib.sha256(user_id.encode("utf-8")).hexdigest()


def is_forgotten(lake: Lake, user_id: str) -> bool:
    if not lake.exists(FORGOTTEN_USERS):
        return False
    return (
        lake.read(FORGOTTEN_USERS).where(F.col("user_id_sha256") == user_hash(user_id)).count() > 0
    )


def _check_ids(user_ids: Sequence[str]) -> list[str]:
    ids = sorted({u for u in user_ids})
    if not ids or any(not u for u in ids):
        raise ConfigError("--user ID is required (a non-empty user id)")
    bad = [u for u in ids if "'" in u or "\\" in u]
    if bad:
        raise ConfigError(
            f"user id {bad[0]!r} holds a quote or backslash, which delete predicates cannot carry"
        )
    return ids


def _quarantine_hashes(lake: Lake, ids: list[str]) -> list[str]:
    """record_hash of quarantined records that belong to the users: their event ids, or
    the user id as a JSON string anywhere in the raw text (as written or with its JSON
    escapes decoded)."""
    q = lake.read(QUARANTINE)
    their_events = lake.read(EVENTS).where(F.col("user_id").isin(ids)).select("event_id").distinct()
    by_event = q.join(their_events, on="event_id", how="left_semi").select("record_hash")
    # the same test ingest applies to new records (echo.stages.ingest.drop_forgotten_users)
    hashes = lake.spark.createDataFrame([(user_hash(u),) for u in ids], "_fh string")
    by_raw = raw_naming(q.withColumnRenamed("record_hash", "content_hash"), hashes).select(
        F.col("content_hash").alias("record_hash")
    )
    return sorted({r[0] for r in by_event.union(by_raw).distinct().collect()})


def _days(lake: Lake, ids: list[str]) -> list[Any]:
    from echo.stages.track import shown_day

    s = lake.read(SUGGESTIONS).where(F.col("user_id").isin(ids) & F.col("shown_ts_ms").isNotNull())
    return sorted({r[0] for r in s.select(shown_day().alias("d")).distinct().collect()})


def execute(
    spark: SparkSession,
    lake: Lake,
    user_ids: Sequence[str],
    *,
    progress: Progress,
    vacuum: bool = True,
) -> dict[str, Any]:
    ids = _check_ids(user_ids)
    now = datetime.datetime.now(datetime.timezone.utc)
    # 1. record first: a forget that fails half-way is redone by running it again, and
    #    ingest already drops the users' records
    lake.merge(
        FORGOTTEN_USERS,
        spark.createDataFrame([(user_hash(u), now, None) for u in ids], FORGOTTEN_USERS.schema),
        info={"echo.stage": STAGE},
    )
    q_hashes = _quarantine_hashes(lake, ids)
    days = _days(lake, ids)
    # 2. aggregated metrics of the days the users' suggestions were shown on, recomputed
    #    without them before their rows go: a forget killed after this commit finds the
    #    days already right; one killed before it finds the users' suggestions still there
    if days and lake.exists(ACCEPTANCE_METRICS):
        from echo.stages.track import acceptance_metrics, shown_day

        current = lake.read(SUGGESTIONS).where(shown_day().isin(days) & ~F.col("user_id").isin(ids))
        lake.replace_partitions(
            ACCEPTANCE_METRICS,
            acceptance_metrics(current).coalesce(1),
            days,
            info={"echo.stage": STAGE},
        )
        progress.step("gold/acceptance_metrics recomputed", days=len(days))
    deleted: dict[str, int] = {}
    # 3. quarantine before events (its match uses the users' event ids)
    deleted[QUARANTINE.name] = 0
    for i in range(0, len(q_hashes), _CHUNK):
        deleted[QUARANTINE.name] += lake.delete(
            QUARANTINE, in_predicate("record_hash", q_hashes[i : i + _CHUNK])
        )
    for t in USER_TABLES:
        deleted[t.name] = lake.delete(t, in_predicate("user_id", ids)) if lake.exists(t) else 0
    progress.step("rows deleted", **{k.replace("/", "_"): v for k, v in deleted.items()})
    # 4. physically remove the files that held the rows: purge rewrites files whose rows
    #    a deletion vector only marks as deleted (delta-spark), vacuum removes the old ones
    vacuumed: dict[str, int] = {}
    if vacuum:
        for t in (QUARANTINE, *USER_TABLES, ACCEPTANCE_METRICS):
            if lake.exists(t):
                lake.purge(t)
                vacuumed[t.name] = lake.vacuum(t, 0)
            else:
                vacuumed[t.name] = 0
        progress.step("vacuumed (retention 0)", files=sum(vacuumed.values()))
    detail = json.dumps({"deleted": deleted, "metric_days": [str(d) for d in days]}, sort_keys=True)
    lake.merge(
        FORGOTTEN_USERS,
        spark.createDataFrame([(user_hash(u), now, detail) for u in ids], FORGOTTEN_USERS.schema),
        info={"echo.stage": STAGE},
    )
    return {
        "users": len(ids),
        "deleted": deleted,
        "metric_days_recomputed": len(days),
        "files_vacuumed": vacuumed,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = job_parser("echo-pipeline forget", __doc__ or "")
    parser.add_argument(
        "--user", action="append", default=[], metavar="ID", help="user id to forget (repeatable)"
    )
    add_flag(
        parser, "vacuum", "vacuum the old files at once (--no-vacuum: delete rows but keep the old "
        "files, which is not private)", default=True,
    )  # fmt: skip
    args, (lake_cfg,) = parse(parser, argv)
    assert isinstance(lake_cfg, LakeConfig)
    ids = _check_ids(args.user)
    progress = Progress(STAGE, quiet=args.quiet)
    with spark_session("echo-forget", master=lake_cfg.master) as spark, open_job_lake(spark, lake_cfg, command=STAGE, quiet=args.quiet) as lake:
        report = execute(spark, lake, ids, progress=progress, vacuum=args.vacuum)
    emit_report(STAGE, report, args)
    return 0
