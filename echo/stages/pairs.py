"""Refinement pairs from suggestions: scrubbing, quality filters, weights, split.

The per-pair logic is plain Python (:func:`build_pair`), run inside Spark tasks by
:func:`pairs_from_suggestions` (``mapInArrow``), and called directly by the tests.
Every candidate row (a ``kept`` or ``refined`` suggestion) comes out with a
``drop_reason`` (null when it passes) and its scrub counts per type, so the job counts
every filter and every scrubbed type in one aggregation. See docs/pairs.md.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from echo import contract
from echo.pairs_config import PairsConfig
from echo.stages.retention import RETENTION_COLUMNS
from echo.stages.scrub import TYPES, scrub_pair
from echo.stages.typed import TYPED_OUTCOMES

if TYPE_CHECKING:
    import pyarrow as pa
    from pyspark.sql import DataFrame
    from pyspark.sql.types import StructType

PAIR_OUTCOMES = contract.PAIR_OUTCOMES
SPLITS = contract.SPLITS

#: Filter reasons, in the order they are checked (a pair counts under the first).
FILTER_REASONS = (
    "non_text",
    "empty_target",
    "whitespace_only_change",
    "too_short",
    "too_long",
    "generated",
    "minified",
)

#: Filter reasons of typed-instead pairs, in the order they are checked: the same
#: filters, with ``same_as_proposal`` (the typed text equals the proposal up to white
#: space: no preference) in place of ``whitespace_only_change``.
TYPED_FILTER_REASONS = (
    "non_text",
    "empty_target",
    "same_as_proposal",
    "too_short",
    "too_long",
    "generated",
    "minified",
)

#: Columns of silver/suggestions the transform reads.
INPUT_COLUMNS = (
    "suggestion_id", "user_id", "session_id", "doc_id", "model_id", "language", "shown_ts_ms",
    "accepted_ts_ms", "horizon_ts_ms", "proposal", "final_text", "outcome", "edit_similarity",
    "prefix", "suffix", "accepted_chars", *RETENTION_COLUMNS,
)  # fmt: skip

#: Columns of silver/suggestions the typed-instead transform reads.
TYPED_INPUT_COLUMNS = (
    "suggestion_id", "user_id", "session_id", "doc_id", "model_id", "language", "shown_ts_ms",
    "proposal", "typed_text", "typed_end_ts_ms", "typed_end", "outcome", "prefix", "suffix",
)  # fmt: skip

SCRUB_COLUMNS = tuple(f"scrub_{t}" for t in TYPES)


# -- split -------------------------------------------------------------------------------
def user_position(user_id: str, salt: str) -> float:
    """A user's stable position in [0, 1): the first 8 bytes of sha256(salt + "\\0" + user_id)."""
    digest = hashlib.sha256(f"{salt}\0{user_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def split_of(user_id: str, cfg: PairsConfig) -> str:
    """``train`` | ``val`` | ``test``: the segment of [0, 1) holding the user's position,
    segments laid out in that order with lengths proportional to the ratios. Changing the
    ratios moves only users between the old and the new boundary, to the adjacent split."""
    total = cfg.train_ratio + cfg.val_ratio + cfg.test_ratio
    u = user_position(user_id, cfg.split_salt)
    if u < cfg.train_ratio / total:
        return "train"
    if u < (cfg.train_ratio + cfg.val_ratio) / total:
        return "val"
    return "test"


# -- filters -----------------------------------------------------------------------------
_OK_CONTROLS = frozenset("\t\n\r\f")
_WS = re.compile(r"\s+")


def nonprintable_count(text: str) -> int:
    """Characters that do not belong in source text: control characters (but tab, newline,
    CR, form feed), U+FFFD (what undecodable bytes became), surrogates, private-use and
    unassigned code points."""
    n = 0
    for ch in text:
        if ch.isprintable() or ch in _OK_CONTROLS or ch == " ":
            continue
        cat = unicodedata.category(ch)
        if cat in ("Zl", "Zp", "Zs", "Cf"):  # line/paragraph separators, format chars (ZWJ, BOM)
            continue
        n += 1
    return n + text.count("\ufffd")


def _is_non_text(texts: list[str], max_ratio: float) -> bool:
    for t in texts:
        if not t:
            continue
        bad = nonprintable_count(t)
        if bad and bad / len(t) > max_ratio:
            return True
    return False


def _is_generated(texts: list[str], markers: tuple[str, ...]) -> bool:
    lowered = [t.lower() for t in texts if t]
    return any(m.lower() in t for m in markers if m for t in lowered)


def _is_minified(texts: list[str], joined: str, cfg: PairsConfig) -> bool:
    if any(len(line) > cfg.max_line_chars for t in texts if t for line in t.splitlines()):
        return True
    if len(joined) >= cfg.minified_min_chars:
        ws = sum(1 for ch in joined if ch.isspace())
        if ws / len(joined) < cfg.min_whitespace_ratio:
            return True
    return False


def filter_reason(
    prefix: str | None, suffix: str | None, proposal: str | None, final_text: str | None, outcome: str,
    cfg: PairsConfig,
) -> str | None:  # fmt: skip
    """The first quality filter (``FILTER_REASONS`` order) the pair fails, or None."""
    pre, suf, prop, fin = prefix or "", suffix or "", proposal or "", final_text or ""
    texts = [pre, suf, prop, fin]
    if _is_non_text(texts, cfg.max_nonprintable_ratio):
        return "non_text"
    if not fin.strip():
        return "empty_target"
    if (
        cfg.drop_whitespace_only_changes
        and outcome == "refined"
        and _WS.sub("", fin) == _WS.sub("", prop)
    ):
        return "whitespace_only_change"
    if len(_WS.sub("", fin)) < cfg.min_target_chars:
        return "too_short"
    if len(fin) > cfg.max_target_chars:
        return "too_long"
    if _is_generated([pre, suf, fin], cfg.generated_markers):
        return "generated"
    if _is_minified(texts, pre + fin + suf, cfg):
        return "minified"
    return None


# -- weight, dedup key ---------------------------------------------------------------------
def survival_seconds(accepted_ts_ms: int | None, horizon_ts_ms: int | None) -> float | None:
    """How long after the accept the final text was observed: the tracking horizon
    (``min(accept + refine_window, session end)``) minus the accept time."""
    if accepted_ts_ms is None or horizon_ts_ms is None:
        return None
    return max(0.0, (horizon_ts_ms - accepted_ts_ms) / 1000.0)


def retention_fraction(row: Mapping[str, Any], horizon: str) -> float | None:
    """``retained_<horizon> / accepted_chars`` of a silver/suggestions row, in [0, 1]
    (None when ``horizon`` is ``off``, the value is unknown or nothing was accepted)."""
    if horizon == "off":
        return None
    retained, chars = row.get(f"retained_{horizon}"), row.get("accepted_chars")
    if retained is None or not chars:
        return None
    return min(1.0, max(0.0, int(retained) / int(chars)))


def pair_weight(
    outcome: str,
    edit_similarity: float | None,
    survival_s: float | None,
    cfg: PairsConfig,
    retention: float | None = None,
) -> float:
    """``base(outcome) * survival_factor``, where

    * base(kept) = ``kept_weight``; base(refined) = ``refined_weight * (1 +
      refined_edit_bonus * (1 - edit_similarity))`` (a bigger correction says more);
    * survival_factor = ``min_survival_factor + (1 - min_survival_factor) *
      min(1, survival_s / survival_full_s)`` (text observed longer is more trustworthy;
      unknown survival counts as 0 s), or with ``retention`` (the ``retention_weight``
      choice: the share of accepted characters retained at a horizon) that share in
      place of the survival fraction.
    """
    if outcome == "refined":
        sim = 1.0 if edit_similarity is None else min(1.0, max(0.0, edit_similarity))
        base = cfg.refined_weight * (1.0 + cfg.refined_edit_bonus * (1.0 - sim))
    else:
        base = cfg.kept_weight
    frac = retention if retention is not None else min(1.0, (survival_s or 0.0) / cfg.survival_full_s)
    return round(base * (cfg.min_survival_factor + (1.0 - cfg.min_survival_factor) * frac), 6)


def normalize(text: str | None) -> str:
    """White space runs collapsed to one space, ends stripped."""
    return _WS.sub(" ", text or "").strip()


def dedup_key(
    prefix: str | None, suffix: str | None, final_text: str | None, context_chars: int
) -> str:
    """sha256 of the normalized context window and the normalized target."""
    pre = (prefix or "")[-context_chars:] if context_chars > 0 else ""
    suf = (suffix or "")[:context_chars] if context_chars > 0 else ""
    payload = "\0".join((normalize(pre), normalize(suf), normalize(final_text)))
    return hashlib.sha256(payload.encode("utf-8", "surrogatepass")).hexdigest()


# -- one pair ------------------------------------------------------------------------------
def build_pair(row: Mapping[str, Any], cfg: PairsConfig, source_version: int) -> dict[str, Any]:
    """One candidate suggestion -> a gold row (without ``user_bucket``) plus
    ``drop_reason`` and ``scrub_<type>`` counts. Scrubbing comes first: filters, weight
    and dedup key all see the scrubbed texts, the only ones that reach gold."""
    s = scrub_pair(row.get("prefix"), row.get("suffix"), row.get("proposal"), row.get("final_text"))
    outcome = str(row["outcome"])
    survival = survival_seconds(row.get("accepted_ts_ms"), row.get("horizon_ts_ms"))
    reason = filter_reason(s.prefix, s.suffix, s.proposal, s.final_text, outcome, cfg)
    out: dict[str, Any] = {
        "suggestion_id": row["suggestion_id"],
        "prefix": s.prefix,
        "suffix": s.suffix,
        "proposal": s.proposal if s.proposal is not None else "",
        "final_text": s.final_text if s.final_text is not None else "",
        "outcome": outcome,
        "language": row.get("language"),
        "model_id": row.get("model_id"),
        "split": split_of(str(row["user_id"]), cfg),
        "user_id": row["user_id"],
        "session_id": row.get("session_id"),
        "doc_id": row["doc_id"],
        "shown_ts_ms": row.get("shown_ts_ms"),
        "accepted_ts_ms": row.get("accepted_ts_ms"),
        "edit_similarity": row.get("edit_similarity"),
        "weight": pair_weight(
            outcome, row.get("edit_similarity"), survival, cfg, retention_fraction(row, cfg.retention_weight)
        ),
        "scrubbed": s.total,
        "source_version": int(source_version),
        "survival_s": survival,
        "scrub_types": ",".join(sorted(s.counts)) or None,
        "dedup_key": dedup_key(s.prefix, s.suffix, s.final_text, cfg.dedup_context_chars),
        "drop_reason": reason,
    }
    for t in TYPES:
        out[f"scrub_{t}"] = int(s.counts.get(t, 0))
    return out


# -- one typed-instead pair ------------------------------------------------------------------
def typed_filter_reason(
    prefix: str | None, suffix: str | None, proposal: str | None, typed_text: str | None, outcome: str,
    cfg: PairsConfig,
) -> str | None:  # fmt: skip
    """The first filter (``TYPED_FILTER_REASONS`` order) a typed-instead pair fails, or None."""
    first = filter_reason(prefix, suffix, proposal, typed_text, outcome, cfg)
    if first in ("non_text", "empty_target"):
        return first
    if _WS.sub("", typed_text or "") == _WS.sub("", proposal or ""):
        return "same_as_proposal"
    return first


def build_typed_pair(row: Mapping[str, Any], cfg: PairsConfig, source_version: int) -> dict[str, Any]:
    """One rejected, ignored or rewritten suggestion with a typed text -> a gold/typed_pairs
    row (without ``user_bucket`` and ``day``) plus ``drop_reason`` and ``scrub_<type>``
    counts: scrubbed like a refinement pair (the typed text in the final text's place),
    then filtered."""
    s = scrub_pair(row.get("prefix"), row.get("suffix"), row.get("proposal"), row.get("typed_text"))
    outcome = str(row["outcome"])
    reason = typed_filter_reason(s.prefix, s.suffix, s.proposal, s.final_text, outcome, cfg)
    out: dict[str, Any] = {
        "suggestion_id": row["suggestion_id"],
        "prefix": s.prefix,
        "suffix": s.suffix,
        "proposal": s.proposal if s.proposal is not None else "",
        "typed_text": s.final_text if s.final_text is not None else "",
        "outcome": outcome,
        "language": row.get("language"),
        "model_id": row.get("model_id"),
        "split": split_of(str(row["user_id"]), cfg),
        "user_id": row["user_id"],
        "session_id": row.get("session_id"),
        "doc_id": row["doc_id"],
        "shown_ts_ms": row.get("shown_ts_ms"),
        "typed_end_ts_ms": row.get("typed_end_ts_ms"),
        "typed_end": row.get("typed_end"),
        "weight": round(cfg.typed_weight, 6),
        "scrubbed": s.total,
        "source_version": int(source_version),
        "scrub_types": ",".join(sorted(s.counts)) or None,
        "dedup_key": dedup_key(s.prefix, s.suffix, s.final_text, cfg.dedup_context_chars),
        "drop_reason": reason,
    }
    for t in TYPES:
        out[f"scrub_{t}"] = int(s.counts.get(t, 0))
    return out


# -- Spark ---------------------------------------------------------------------------------
def candidate_schema(typed: bool = False) -> StructType:
    """Gold columns (but ``user_bucket`` and ``day``) of gold/refinement_pairs (or
    gold/typed_pairs), ``drop_reason`` and one count per scrub type."""
    from pyspark.sql.types import LongType, StringType, StructField, StructType

    from echo.lake.tables import REFINEMENT_PAIRS, TYPED_PAIRS

    table = TYPED_PAIRS if typed else REFINEMENT_PAIRS
    fields = [f for f in table.schema.fields if f.name not in ("user_bucket", "day")]
    fields.append(StructField("drop_reason", StringType(), True))
    fields += [StructField(c, LongType(), False) for c in SCRUB_COLUMNS]
    return StructType(fields)


def _arrow_schema(schema: StructType) -> pa.Schema:
    from echo.lake.arrow import to_arrow_schema

    return to_arrow_schema(schema, all_nullable=True)


def pairs_from_suggestions(
    suggestions: DataFrame, cfg: PairsConfig, source_version: int
) -> DataFrame:
    """Candidates (``kept``/``refined`` rows of silver/suggestions) -> rows of
    :func:`candidate_schema`, computed in the executors."""
    from pyspark.sql import functions as F

    schema = candidate_schema()
    arrow_schema = _arrow_schema(schema)

    def fn(batches: Iterable[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        import pyarrow as pa

        for batch in batches:
            rows = [build_pair(r, cfg, source_version) for r in batch.to_pylist()]
            yield pa.RecordBatch.from_pylist(rows, schema=arrow_schema)

    candidates = suggestions.where(F.col("outcome").isin(*PAIR_OUTCOMES)).select(*INPUT_COLUMNS)
    return candidates.mapInArrow(fn, schema)


def typed_pairs_from_suggestions(suggestions: DataFrame, cfg: PairsConfig, source_version: int) -> DataFrame:
    """Typed-instead candidates (rejected, ignored and rewritten rows of
    silver/suggestions with a typed text) -> rows of ``candidate_schema(typed=True)``,
    computed in the executors."""
    from pyspark.sql import functions as F

    schema = candidate_schema(typed=True)
    arrow_schema = _arrow_schema(schema)

    def fn(batches: Iterable[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        import pyarrow as pa

        for batch in batches:
            rows = [build_typed_pair(r, cfg, source_version) for r in batch.to_pylist()]
            yield pa.RecordBatch.from_pylist(rows, schema=arrow_schema)

    candidates = suggestions.where(F.col("outcome").isin(*TYPED_OUTCOMES) & F.col("typed_text").isNotNull())
    return candidates.select(*TYPED_INPUT_COLUMNS).mapInArrow(fn, schema)
