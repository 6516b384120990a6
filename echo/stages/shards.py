"""Training rows from gold/refinement_pairs: SFT (prompt/completion) and preference
(prompt/chosen/rejected), and from gold/feedback: unpaired KTO rows
(prompt/completion/label), all with the same fill-in-the-middle prompts.

``prompt = fim_prefix + prefix[-max_prefix_chars:] + fim_suffix + suffix[:max_suffix_chars]
+ fim_middle`` (``fim_mode="psm"``, the default) or ``prefix[-max_prefix_chars:]`` alone
(``"lm"``, left to right); SFT ``completion`` is the final text; preference rows (``refined`` pairs
only) have ``chosen`` = final text, ``rejected`` = the model's proposal, ``source = "refined"``;
typed-instead pairs (gold/typed_pairs) add preference rows with ``chosen`` = the typed
text, ``source = "typed"``. The column
layout is fixed (see :mod:`echo.shards.manifest`). :func:`fim_prompt` is the plain-Python
definition; :func:`fim_prompt_col` the same as a Spark expression, and a test keeps them
equal.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from echo.pairs_config import ShardsConfig

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame

SFT_COLUMNS = (
    "prompt",
    "completion",
    "weight",
    "suggestion_id",
    "language",
    "model_id",
    "proposal",
    "prefix",
    "suffix",
)
PREF_COLUMNS = ("prompt", "chosen", "rejected", "weight", "suggestion_id", "language", "model_id", "source")
#: ``source`` of a preference row: a refined pair, or a typed-instead pair.
PREF_SOURCES = ("refined", "typed")
#: TRL's unpaired (KTO) format: prompt, completion, label (+ weight and lineage).
KTO_COLUMNS = (
    "prompt", "completion", "label", "weight", "suggestion_id", "language", "model_id", "outcome",
)  # fmt: skip
FORMATS = {"sft": SFT_COLUMNS, "pref": PREF_COLUMNS, "kto": KTO_COLUMNS}


def clip_prefix(prefix: str | None, n: int) -> str:
    p = prefix or ""
    return p[-n:] if n > 0 else p


def clip_suffix(suffix: str | None, n: int) -> str:
    s = suffix or ""
    return s[:n] if n > 0 else s


def fim_prompt(prefix: str | None, suffix: str | None, cfg: ShardsConfig) -> str:
    if cfg.fim_mode == "lm":
        return clip_prefix(prefix, cfg.max_prefix_chars)
    return (
        cfg.fim_prefix
        + clip_prefix(prefix, cfg.max_prefix_chars)
        + cfg.fim_suffix
        + clip_suffix(suffix, cfg.max_suffix_chars)
        + cfg.fim_middle
    )


def _clip_col(col: str, n: int, *, tail: bool) -> Column:
    from pyspark.sql import functions as F

    c = F.coalesce(F.col(col), F.lit(""))
    if n <= 0:
        return c
    if tail:  # last n characters (Spark's substring counts characters, 1-based)
        return F.when(
            F.length(c) > n, F.expr(f"substring(coalesce(`{col}`, ''), -{n}, {n})")
        ).otherwise(c)
    return F.substring(c, 1, n)


def fim_prompt_col(cfg: ShardsConfig) -> Column:
    from pyspark.sql import functions as F

    if cfg.fim_mode == "lm":
        return _clip_col("prefix", cfg.max_prefix_chars, tail=True)
    return F.concat(
        F.lit(cfg.fim_prefix),
        _clip_col("prefix", cfg.max_prefix_chars, tail=True),
        F.lit(cfg.fim_suffix),
        _clip_col("suffix", cfg.max_suffix_chars, tail=False),
        F.lit(cfg.fim_middle),
    )


def dedupe(pairs: DataFrame) -> DataFrame:
    """Keep one pair per ``dedup_key``: the lowest ``suggestion_id`` (deterministic, and
    the same whether gold was built in one run or many)."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    w = Window.partitionBy("dedup_key").orderBy("suggestion_id")
    return (
        pairs.withColumn("_rank", F.row_number().over(w)).where(F.col("_rank") == 1).drop("_rank")
    )


def sft_rows(pairs: DataFrame, cfg: ShardsConfig) -> DataFrame:
    """``split`` + SFT_COLUMNS, one row per pair."""
    from pyspark.sql import functions as F

    return pairs.select(
        "split",
        fim_prompt_col(cfg).alias("prompt"),
        F.col("final_text").alias("completion"),
        F.col("weight").cast("double").alias("weight"),
        "suggestion_id", "language", "model_id", "proposal",
        _clip_col("prefix", cfg.max_prefix_chars, tail=True).alias("prefix"),
        _clip_col("suffix", cfg.max_suffix_chars, tail=False).alias("suffix"),
    )  # fmt: skip


def pref_rows(pairs: DataFrame, cfg: ShardsConfig) -> DataFrame:
    """``split`` + PREF_COLUMNS, one row per ``refined`` pair whose proposal differs."""
    from pyspark.sql import functions as F

    refined = pairs.where(
        (F.col("outcome") == "refined") & (F.col("final_text") != F.col("proposal"))
    )
    return refined.select(
        "split",
        fim_prompt_col(cfg).alias("prompt"),
        F.col("final_text").alias("chosen"),
        F.col("proposal").alias("rejected"),
        F.col("weight").cast("double").alias("weight"),
        "suggestion_id", "language", "model_id", F.lit("refined").alias("source"),
    )  # fmt: skip


def typed_pref_rows(typed: DataFrame, cfg: ShardsConfig) -> DataFrame:
    """``split`` + PREF_COLUMNS, one row per typed-instead pair (gold/typed_pairs):
    chosen = what the user typed, rejected = the proposal."""
    from pyspark.sql import functions as F

    return typed.where(F.col("typed_text") != F.col("proposal")).select(
        "split",
        fim_prompt_col(cfg).alias("prompt"),
        F.col("typed_text").alias("chosen"),
        F.col("proposal").alias("rejected"),
        F.col("weight").cast("double").alias("weight"),
        "suggestion_id", "language", "model_id", F.lit("typed").alias("source"),
    )  # fmt: skip


def kto_rows(feedback: DataFrame, cfg: ShardsConfig) -> DataFrame:
    """``split`` + KTO_COLUMNS, one row per gold/feedback row (TRL's unpaired format:
    ``label`` true for a desirable completion)."""
    from pyspark.sql import functions as F

    return feedback.select(
        "split",
        fim_prompt_col(cfg).alias("prompt"),
        "completion",
        F.col("label").cast("boolean").alias("label"),
        F.col("weight").cast("double").alias("weight"),
        "suggestion_id", "language", "model_id", "outcome",
    )  # fmt: skip


def with_shard_index(rows: DataFrame, n_shards: int) -> DataFrame:
    """Add ``_shard`` in [0, n): rows of each split ordered by suggestion_id and dealt
    round-robin, so the files of a split differ by at most one row and the assignment is
    the same on every run."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    w = Window.partitionBy("split").orderBy("suggestion_id")
    return rows.withColumn("_shard", ((F.row_number().over(w) - 1) % F.lit(n_shards)).cast("int"))
