"""The suggestion graph: node features known at show and accept time, and edges.

A node is a shown suggestion of ``silver/suggestions``. Its features use only what is
known when it is shown and (if so) accepted: model, language, latency, proposal size and
shape, the accept and how much of the proposal it took, hashed character n-grams of the
prefix tail and of the proposal, and the user's rates over *earlier* suggestions whose
outcome was already known at this one's show time. Nothing derived from this
suggestion's own outcome (final text, similarity, changes applied, retention, walk end)
is read: :data:`FEATURE_INPUTS` lists every column the features read, and a test
checks that changing the outcome columns leaves the features unchanged.

Edges join a suggestion to earlier ones of the same user: the previous suggestion of
the same session, the previous ones of the same document close in time, the user's
previous ones, and earlier ones with a near-identical context (same min-hash bucket of
the prefix tail's n-grams). All edges stay within one user, so recomputing a user
recomputes exactly their nodes and edges (see docs/graph.md).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pyspark.sql import Column, Window
from pyspark.sql import functions as F

from echo.graph.config import GraphConfig

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

#: every column of silver/suggestions the node features read (none outcome-derived)
FEATURE_INPUTS = (
    "suggestion_id", "session_id", "user_id", "doc_id", "model_id", "language", "shown_ts_ms",
    "proposal", "prefix", "shown_offset", "latency_ms", "accepted_ts_ms", "accepted_chars",
)  # fmt: skip
#: outcome-derived columns: never read for features (the label is ``outcome`` itself)
OUTCOME_COLUMNS = (
    "final_text", "edit_similarity", "changes_applied", "retained_chars", "walk_end",
    "horizon_ts_ms", "accepted_doc_version", "suffix",
)  # fmt: skip
#: the outcomes a forecaster predicts, in probability-column order
CLASSES = ("ignored", "rejected", "kept", "refined", "rewritten", "deleted")
RATE_OUTCOMES = ("accepted", "kept", "refined", "rewritten", "deleted", "rejected")
#: fixed rates a user's earlier rates are smoothed toward (a constant, so that no node's
#: features depend on other users' or its own outcome, and a user's recompute is exact)
PRIOR_RATES = {"accepted": 0.3, "kept": 0.2, "refined": 0.06, "rewritten": 0.01, "deleted": 0.01, "rejected": 0.3}
SCALAR_FEATURES = (
    "accepted", "partial_accept", "accepted_share", "log_accept_delay_s", "log_latency_ms",
    "log_proposal_chars", "log_proposal_lines", "proposal_ws_share", "proposal_empty",
    "log_prefix_chars", "prefix_ends_newline", "log_offset", "log_session_pos",
    "log_gap_prev_s", "log_user_known",
    *[f"user_{o}_rate" for o in RATE_OUTCOMES],
)  # fmt: skip
CATEGORY_DIMS = 8  # hashed one-hot dims of model_id and of language
PROPOSAL_CHARS = 512  # the proposal's n-grams are hashed over its first this many characters
FEATURE_VERSION = "v2"  # v2: proposal n-grams over its first PROPOSAL_CHARS characters

EDGE_TYPES = ("session", "document", "user", "context")


def feature_names(cfg: GraphConfig) -> list[str]:
    return [
        *SCALAR_FEATURES,
        *[f"model_h{i}" for i in range(CATEGORY_DIMS)],
        *[f"language_h{i}" for i in range(CATEGORY_DIMS)],
        *[f"prefix_ng{i}" for i in range(cfg.hash_dims)],
        *[f"proposal_ng{i}" for i in range(cfg.hash_dims)],
    ]


def _log1p(c: Column) -> Column:
    return F.log1p(F.greatest(F.coalesce(c.cast("double"), F.lit(0.0)), F.lit(0.0)))


def _grams(text: Column, n: int) -> Column:
    """Array of the character n-grams of ``text`` (empty when shorter than n)."""
    t = F.coalesce(text, F.lit(""))
    k = F.char_length(t) - n + 1
    return F.when(
        k >= 1, F.transform(F.sequence(F.lit(1), k), lambda i: F.substring(t, i, n))
    ).otherwise(F.array().cast("array<string>"))


def gram_hashes(text: Column, n: int, dims: int, salt: str) -> Column:
    """The bucket (``xxhash64(salt, g) mod dims``) of every character n-gram of ``text``."""
    return F.transform(_grams(text, n), lambda g: F.pmod(F.xxhash64(F.lit(salt), g), F.lit(dims)))


def bucket_shares(hashes: Column, dims: int) -> Column:
    """Share of the ``hashes`` in each of ``dims`` buckets (sums to 1, or all 0), in one
    pass over the array. ``hashes`` should be a column, not an expression: Spark would
    re-evaluate an expression per use."""
    counts = F.aggregate(
        hashes,
        F.array_repeat(F.lit(0.0), dims),
        lambda acc, h: F.transform(acc, lambda v, i: v + F.when(i == h, 1.0).otherwise(0.0)),
    )
    total = F.greatest(F.size(hashes), F.lit(1)).cast("double")
    return F.transform(counts, lambda v: v / total)


def hashed_ngrams(text: Column, n: int, dims: int, salt: str) -> Column:
    """Frequencies of the n-grams hashed into ``dims`` buckets (sums to 1, or all 0)."""
    return bucket_shares(gram_hashes(text, n, dims, salt), dims)


def hashed_onehot(value: Column, dims: int, salt: str) -> Column:
    h = F.pmod(F.xxhash64(F.lit(salt), F.coalesce(value, F.lit(""))), F.lit(dims))
    return F.transform(F.sequence(F.lit(0), F.lit(dims - 1)), lambda i: (i == h).cast("double"))


def _tail(col: str, chars: int) -> Column:
    t = F.coalesce(F.col(col), F.lit(""))
    return F.when(F.char_length(t) > chars, F.substring(t, -chars, chars)).otherwise(t)


def _head(col: str, chars: int) -> Column:
    return F.substring(F.coalesce(F.col(col), F.lit("")), 1, chars)


def known_ts(cfg: GraphConfig) -> Column:
    """When a suggestion's outcome is final: a refine window after the accept, else after
    the show (an upper bound of the contract's horizon)."""
    window = F.lit(int(cfg.refine_window_s) * 1000)
    return F.coalesce(F.col("accepted_ts_ms"), F.col("shown_ts_ms")) + window


def user_rates(suggestions: DataFrame, cfg: GraphConfig) -> DataFrame:
    """``suggestion_id``, ``user_known`` and ``user_{outcome}_rate`` over the user's
    suggestions whose outcome was known strictly before this one was shown, smoothed
    toward :data:`PRIOR_RATES` with ``rate_prior`` pseudo-counts."""
    known = F.col("outcome").isin(*CLASSES) | (F.col("outcome") == "replay_gap")
    done = suggestions.where(F.col("shown_ts_ms").isNotNull() & known)
    inc = {
        "accepted": ~F.col("outcome").isin("ignored", "rejected"),
        **{o: F.col("outcome") == o for o in RATE_OUTCOMES if o != "accepted"},
    }
    prior = PRIOR_RATES
    events = done.select(
        "user_id",
        known_ts(cfg).alias("t"),
        F.lit(0).alias("kind"),
        F.lit(None).cast("string").alias("suggestion_id"),
        F.lit(1.0).alias("n"),
        *[c.cast("double").alias(o) for o, c in inc.items()],
    )
    queries = suggestions.where(F.col("shown_ts_ms").isNotNull()).select(
        "user_id",
        F.col("shown_ts_ms").alias("t"),
        F.lit(1).alias("kind"),
        "suggestion_id",
        F.lit(0.0).alias("n"),
        *[F.lit(0.0).alias(o) for o in RATE_OUTCOMES],
    )
    # outcomes known at time t sort before a show at t: "known strictly before" needs
    # kind 1 first at equal t
    w = (
        Window.partitionBy("user_id")
        .orderBy("t", F.col("kind").desc(), "suggestion_id")
        .rowsBetween(Window.unboundedPreceding, Window.currentRow)
    )
    m = float(cfg.rate_prior)
    cum = events.unionByName(queries).select(
        "kind", "suggestion_id",
        F.sum("n").over(w).alias("user_known"),
        *[F.sum(o).over(w).alias(f"c_{o}") for o in RATE_OUTCOMES],
    )  # fmt: skip
    return cum.where(F.col("kind") == 1).select(
        "suggestion_id",
        "user_known",
        *[
            ((F.col(f"c_{o}") + F.lit(m * prior[o])) / F.greatest(F.col("user_known") + F.lit(m), F.lit(1.0)))
            .alias(f"user_{o}_rate")
            for o in RATE_OUTCOMES
        ],
    )


def nodes(suggestions: DataFrame, cfg: GraphConfig) -> DataFrame:
    """gold/suggestion_graph rows (without ``user_bucket``) of the shown suggestions."""
    shown = suggestions.where(F.col("shown_ts_ms").isNotNull())
    rates = user_rates(shown.select(*FEATURE_INPUTS, "outcome"), cfg)
    # the n-gram hashes as columns first: computed once per row, not once per bucket
    base = (
        shown.select(*FEATURE_INPUTS)
        .join(rates, on="suggestion_id", how="left")
        .withColumn("_prefix_t", _tail("prefix", cfg.context_chars))
        .withColumn("_proposal_t", _head("proposal", PROPOSAL_CHARS))
        .withColumn("_prefix_h", gram_hashes(F.col("_prefix_t"), cfg.ngram, cfg.hash_dims, "prefix"))
        .withColumn("_proposal_h", gram_hashes(F.col("_proposal_t"), cfg.ngram, cfg.hash_dims, "proposal"))
    )
    sess = Window.partitionBy("session_id").orderBy("shown_ts_ms", "suggestion_id")
    proposal = F.coalesce(F.col("proposal"), F.lit(""))
    plen = F.char_length(proposal)
    acc = F.col("accepted_ts_ms").isNotNull()
    achars = F.coalesce(F.col("accepted_chars"), F.lit(0)).cast("double")
    prev_ts = F.lag("shown_ts_ms").over(sess)
    prefix = F.coalesce(F.col("prefix"), F.lit(""))
    scalars = [
        acc.cast("double"),
        (acc & (achars < plen)).cast("double"),
        F.when(acc, achars / F.greatest(plen, F.lit(1))).otherwise(0.0),
        F.when(acc, _log1p((F.col("accepted_ts_ms") - F.col("shown_ts_ms")) / 1000)).otherwise(0.0),
        _log1p(F.col("latency_ms")),
        _log1p(plen),
        _log1p(F.size(F.split(proposal, "\n"))),
        (F.char_length(proposal) - F.char_length(F.regexp_replace(proposal, r"\s", "")))
        / F.greatest(plen, F.lit(1)).cast("double"),
        (F.trim(proposal) == "").cast("double"),
        _log1p(F.char_length(prefix)),
        prefix.endswith("\n").cast("double"),
        _log1p(F.col("shown_offset")),
        _log1p(F.row_number().over(sess) - 1),
        F.when(prev_ts.isNull(), 0.0).otherwise(_log1p((F.col("shown_ts_ms") - prev_ts) / 1000)),
        _log1p(F.col("user_known")),
        *[F.coalesce(F.col(f"user_{o}_rate"), F.lit(0.0)) for o in RATE_OUTCOMES],
    ]
    features = F.concat(
        F.array(*[c.cast("double") for c in scalars]),
        hashed_onehot(F.col("model_id"), CATEGORY_DIMS, "model"),
        hashed_onehot(F.col("language"), CATEGORY_DIMS, "language"),
        bucket_shares(F.col("_prefix_h"), cfg.hash_dims),
        bucket_shares(F.col("_proposal_h"), cfg.hash_dims),
    )
    return base.select(
        "suggestion_id", "user_id", "session_id", "doc_id", "model_id", "language",
        "shown_ts_ms", "accepted_ts_ms",
        known_ts(cfg).alias("known_ts_ms"),
        features.alias("features"),
        F.lit(FEATURE_VERSION).alias("feature_version"),
    )  # fmt: skip


def _lag_edges(df: DataFrame, key: str, lag: int, etype: str, max_gap_ms: int | None = None) -> DataFrame | None:
    """Edges from each of the ``lag`` previous rows of the same ``key`` (by show time),
    in one window pass."""
    if lag < 1:
        return None
    w = Window.partitionBy(key).orderBy("shown_ts_ms", "suggestion_id")
    prev = F.array(*[
        F.struct(F.lag("suggestion_id", k).over(w).alias("src_id"), F.lag("shown_ts_ms", k).over(w).alias("src_ts"))
        for k in range(1, lag + 1)
    ])  # fmt: skip
    e = df.select(F.col("suggestion_id").alias("dst_id"), "shown_ts_ms", "user_id", prev.alias("prev"))
    e = e.select("dst_id", "shown_ts_ms", "user_id", F.explode("prev").alias("p")).where(
        F.col("p.src_id").isNotNull()
    )
    e = e.select(
        F.col("p.src_id").alias("src_id"),
        "dst_id",
        F.lit(etype).alias("edge_type"),
        (F.col("shown_ts_ms") - F.col("p.src_ts")).alias("gap_ms"),
        "user_id",
    )
    return e.where(F.col("gap_ms") <= max_gap_ms) if max_gap_ms is not None else e


def edges(suggestions: DataFrame, cfg: GraphConfig) -> DataFrame:
    """gold/suggestion_edges rows (without ``user_bucket``): ``src_id`` is the earlier
    suggestion, ``dst_id`` the later one; one row per (src, dst, type)."""
    df = suggestions.where(F.col("shown_ts_ms").isNotNull()).select(
        "suggestion_id", "session_id", "user_id", "doc_id", "shown_ts_ms", "prefix"
    )
    parts = [
        _lag_edges(df.withColumn("k", F.concat_ws("\u0000", "user_id", "session_id")), "k", 1, "session"),
        _lag_edges(df.withColumn("k", F.concat_ws("\u0000", "user_id", "doc_id")), "k", cfg.doc_lag,
                   "document", cfg.doc_window_s * 1000),
        _lag_edges(df, "user_id", cfg.user_lag, "user"),
    ]  # fmt: skip
    if cfg.minhash_bands > 0 and cfg.context_lag > 0:
        df = df.withColumn("_t", _tail("prefix", cfg.context_chars))
        df = df.withColumn("_g", F.array_distinct(_grams(F.col("_t"), cfg.ngram)))
        g = F.col("_g")
        keys = []
        for b in range(cfg.minhash_bands):
            h1 = F.array_min(F.transform(g, lambda x, b=b: F.xxhash64(F.lit(2 * b), x)))  # type: ignore[misc]
            h2 = F.array_min(F.transform(g, lambda x, b=b: F.xxhash64(F.lit(2 * b + 1), x)))  # type: ignore[misc]
            keys.append(F.concat_ws(":", "user_id", F.lit(b), h1.cast("string"), h2.cast("string")))
        bucketed = df.where(F.size(g) > 0).withColumn("k", F.explode(F.array(*keys)))
        parts.append(_lag_edges(bucketed, "k", cfg.context_lag, "context"))
    out = None
    for p in parts:
        if p is not None:
            out = p if out is None else out.unionByName(p)
    assert out is not None
    # a pair found in several context bands counts once, weighted by the share of bands
    bands = float(max(cfg.minhash_bands, 1))
    return out.groupBy("src_id", "dst_id", "edge_type", "user_id").agg(
        F.min("gap_ms").alias("gap_ms"),
        F.when(F.col("edge_type") == "context", F.count(F.lit(1)) / bands).otherwise(1.0).alias("weight"),
    )
