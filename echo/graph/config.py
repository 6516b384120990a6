"""Settings of the ``graph`` and ``forecast`` commands (torch-free; see docs/graph.md)."""

from __future__ import annotations

from dataclasses import dataclass

from echo.config import Validated, setting
from echo.errors import ConfigError


@dataclass(frozen=True)
class GraphConfig(Validated):
    """silver/suggestions -> gold/suggestion_graph (nodes) and gold/suggestion_edges."""

    refine_window_s: int = setting(
        600,
        "the pipeline's refine window: an outcome counts as known (for the user's earlier "
        "rates) this long after the accept, or after the show when not accepted",
    )
    ngram: int = setting(3, "character n-gram size of the hashed text features and the context buckets")
    hash_dims: int = setting(32, "hashed n-gram dimensions per text (prefix tail, proposal)")
    context_chars: int = setting(64, "characters of the prefix tail used for features and context buckets")
    rate_prior: float = setting(
        10.0, "pseudo-count pulling a user's earlier rates toward the lake-wide rates"
    )
    doc_window_s: int = setting(300, "same-document edges join suggestions at most this many seconds apart")
    doc_lag: int = setting(3, "same-document edges go to at most this many earlier suggestions")
    user_lag: int = setting(3, "same-user edges go to this many earlier suggestions of the user")
    minhash_bands: int = setting(4, "context buckets per suggestion (two min-hashes each)")
    context_lag: int = setting(2, "context edges go to at most this many earlier suggestions per bucket")
    rebuild: bool = setting(False, "recompute every user (done anyway when a setting above changed)")

    def validate(self) -> None:
        for name in ("ngram", "hash_dims", "context_chars"):
            if getattr(self, name) < 1:
                raise ConfigError(f"--{name.replace('_', '-')} must be at least 1")
        for name in ("refine_window_s", "doc_window_s", "doc_lag", "user_lag", "minhash_bands", "context_lag"):
            if getattr(self, name) < 0:
                raise ConfigError(f"--{name.replace('_', '-')} must be >= 0")
        if self.rate_prior < 0:
            raise ConfigError("--rate-prior must be >= 0")

    def content_settings(self) -> dict[str, object]:
        """The settings the tables depend on (a change recomputes every user)."""
        return {k: v for k, v in self.__dict__.items() if k != "rebuild"}


@dataclass(frozen=True)
class ForecastConfig(Validated):
    """gold/suggestion_graph + edges -> gold/outcome_predictions, gold/outcome_estimates."""

    base: str = setting("sage", "base classifier", choices=("mlp", "gcn", "sage"))
    method: str = setting(
        "reweight", "imbalance method of the base", choices=("ce", "reweight", "oversample")
    )
    structural_balance: bool = setting(True, "put GraphSB-style structural balance in front of the base")
    refine_window_s: int = setting(
        600, "the pipeline's refine window: a suggestion shown or accepted less than this before --as-of-ms is open"
    )
    as_of_ms: int = setting(
        0, "the forecast's 'now' in epoch ms (0: the newest shown or accepted time in the graph)"
    )
    val_share: float = setting(0.2, "newest share of the closed suggestions held out to pick the epoch")
    epochs: int = setting(200, "training epochs at most (early stopping on validation balanced accuracy)")
    hidden: int = setting(64, "hidden units of the base")
    seed: int = setting(0, "random seed of the forecaster")
    max_nodes: int = setting(
        500_000, "refuse graphs with more nodes than this (the forecaster trains in one process)"
    )

    def validate(self) -> None:
        if not 0.0 < self.val_share < 1.0:
            raise ConfigError("--val-share must be within (0, 1)")
        if self.epochs < 1 or self.hidden < 1:
            raise ConfigError("--epochs and --hidden must be at least 1")
        if self.refine_window_s < 0 or self.as_of_ms < 0:
            raise ConfigError("--refine-window-s and --as-of-ms must be >= 0")
