"""Unpaired feedback (KTO) from suggestions: one labelled completion per suggestion.

What the user did with a suggestion says whether a completion was good in its context,
even where there is no pair to compare:

* desirable (``label`` true): the final text of a ``kept`` or ``refined`` suggestion,
  what the user ended up with;
* undesirable (``label`` false): the proposal of a ``deleted`` or ``rewritten``
  suggestion, what the user accepted and then threw away.

Which outcomes count on each side, and their weights, are settings
(``PairsConfig.feedback_*``). Rows are scrubbed and filtered like refinement pairs (the
completion is the filters' target), weighted, split by user like the pairs, and get a
near-duplicate key. :func:`build_feedback` is the plain-Python rule; the Spark
transform :func:`feedback_from_suggestions` runs it in the executors. See docs/pairs.md.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from echo.pairs_config import PairsConfig
from echo.stages.pairs import (
    INPUT_COLUMNS,
    SCRUB_COLUMNS,
    dedup_key,
    filter_reason,
    pair_weight,
    split_of,
    survival_seconds,
)
from echo.stages.scrub import TYPES, scrub_pair

if TYPE_CHECKING:
    import pyarrow as pa
    from pyspark.sql import DataFrame
    from pyspark.sql.types import StructType


def label_of(outcome: str, cfg: PairsConfig) -> bool | None:
    """True (desirable), False (undesirable) or None (not feedback) for an outcome."""
    if not cfg.feedback:
        return None
    if outcome in cfg.feedback_desirable_outcomes:
        return True
    if outcome in cfg.feedback_undesirable_outcomes:
        return False
    return None


def feedback_weight(
    outcome: str,
    label: bool,
    edit_similarity: float | None,
    survival_s: float | None,
    cfg: PairsConfig,
) -> float:
    """Desirable rows weigh what their refinement pair weighs (:func:`pair_weight`, a
    ``rewritten`` final text counting as ``kept``); undesirable rows weigh
    ``feedback_undesirable_weight``."""
    if not label:
        return round(cfg.feedback_undesirable_weight, 6)
    return pair_weight(outcome if outcome == "refined" else "kept", edit_similarity, survival_s, cfg)


def feedback_key(
    prefix: str | None, suffix: str | None, completion: str, label: bool, context_chars: int
) -> str:
    """Near-duplicate key: the pairs' key of (context, completion), with the label."""
    base = dedup_key(prefix, suffix, completion, context_chars)
    return hashlib.sha256(f"{base}:{int(label)}".encode()).hexdigest()


def build_feedback(
    row: Mapping[str, Any], cfg: PairsConfig, source_version: int
) -> dict[str, Any] | None:
    """One suggestion -> a gold/feedback row (without ``user_bucket``) plus
    ``drop_reason`` and ``scrub_<type>`` counts, or None when its outcome is not
    feedback. The completion is the final text of a desirable row, the proposal of an
    undesirable one; scrubbing comes before the filters, weight and key."""
    outcome = str(row["outcome"])
    label = label_of(outcome, cfg)
    if label is None:
        return None
    s = scrub_pair(row.get("prefix"), row.get("suffix"), row.get("proposal"), row.get("final_text"))
    completion = (s.final_text if label else s.proposal) or ""
    reason = filter_reason(s.prefix, s.suffix, s.proposal, completion, outcome, cfg)
    survival = survival_seconds(row.get("accepted_ts_ms"), row.get("horizon_ts_ms"))
    out: dict[str, Any] = {
        "suggestion_id": row["suggestion_id"],
        "prefix": s.prefix,
        "suffix": s.suffix,
        "completion": completion,
        "label": label,
        "outcome": outcome,
        "language": row.get("language"),
        "model_id": row.get("model_id"),
        "split": split_of(str(row["user_id"]), cfg),
        "user_id": row["user_id"],
        "session_id": row.get("session_id"),
        "doc_id": row["doc_id"],
        "shown_ts_ms": row.get("shown_ts_ms"),
        "edit_similarity": row.get("edit_similarity"),
        "weight": feedback_weight(outcome, label, row.get("edit_similarity"), survival, cfg),
        "scrubbed": s.total,
        "source_version": int(source_version),
        "dedup_key": feedback_key(s.prefix, s.suffix, completion, label, cfg.dedup_context_chars),
        "drop_reason": reason,
    }
    for t in TYPES:
        out[f"scrub_{t}"] = int(s.counts.get(t, 0))
    return out


# -- Spark ---------------------------------------------------------------------------------
def feedback_candidate_schema() -> StructType:
    """gold/feedback columns (but ``user_bucket`` and ``day``), ``drop_reason``, scrub counts."""
    from pyspark.sql.types import LongType, StringType, StructField, StructType

    from echo.lake.tables import FEEDBACK

    fields = [f for f in FEEDBACK.schema.fields if f.name not in ("user_bucket", "day")]
    fields.append(StructField("drop_reason", StringType(), True))
    fields += [StructField(c, LongType(), False) for c in SCRUB_COLUMNS]
    return StructType(fields)


def feedback_outcomes(cfg: PairsConfig) -> tuple[str, ...]:
    if not cfg.feedback:
        return ()
    return tuple(cfg.feedback_desirable_outcomes) + tuple(cfg.feedback_undesirable_outcomes)


def feedback_from_suggestions(
    suggestions: DataFrame, cfg: PairsConfig, source_version: int
) -> DataFrame:
    """Suggestions whose outcome is feedback -> rows of :func:`feedback_candidate_schema`."""
    from pyspark.sql import functions as F

    from echo.lake.arrow import to_arrow_schema

    schema = feedback_candidate_schema()
    arrow_schema = to_arrow_schema(schema, all_nullable=True)

    def fn(batches: Iterable[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        import pyarrow as pa

        for batch in batches:
            rows = [build_feedback(r, cfg, source_version) for r in batch.to_pylist()]
            yield pa.RecordBatch.from_pylist([r for r in rows if r is not None], schema=arrow_schema)

    outcomes = feedback_outcomes(cfg)
    candidates = suggestions.where(
        F.col("outcome").isin(*outcomes) if outcomes else F.lit(False)
    ).select(*INPUT_COLUMNS)
    return candidates.mapInArrow(fn, schema)
