"""Settings of the telemetry simulator (``python -m echo simulate``).

Two sections: :class:`SimConfig` (world, users, output) and :class:`FaultConfig`
(transport faults). Both are frozen dataclasses built with :func:`echo.config.setting`,
so they are settable by YAML (``--config``) and by flags; the command line wins.
The reasoning behind each default is in ``docs/simulator.md``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from echo.config import Validated, setting
from echo.errors import ConfigError


@dataclass(frozen=True)
class SimConfig(Validated):
    """The simulated world: users, days, documents, proposal models, output."""

    users: int = setting(20, "number of simulated users")
    days: int = setting(2, "number of simulated days")
    seed: int = setting(0, "random seed: the same seed and settings give byte-identical output")
    user_prefix: str = setting(
        "u",
        "prefix of user ids ('{prefix}-{index:05d}'); use a fresh prefix for users disjoint from earlier runs",
    )
    cohort: str = setting(
        "",
        "paired runs: users of one cohort with the same index are the same person (traits, files, "
        "random draws) whatever their user_prefix; ids stay unique per user id",
    )
    user_offset: int = setting(
        0, "index of the first user (a later run can continue after an earlier one)"
    )
    start_ts_ms: int = setting(
        1_709_510_400_000, "UTC midnight of the first simulated day (default 2024-03-04)"
    )
    corpus: str = setting(
        "", "directory of source files users write (default: the Python standard library)"
    )
    max_doc_chars: int = setting(
        12_000, "a corpus file longer than this is cut to a window of whole lines"
    )
    models: tuple[str, ...] = setting(
        ("echo-sim-s", "echo-sim-m", "echo-sim-l"),
        "model ids of the built-in noisy-oracle proposers",
    )
    model_quality: tuple[float, ...] = setting(
        (0.45, 0.55, 0.65), "share of exact or truncated oracle proposals, one per model id"
    )
    format: str = setting(
        "jsonl", "output format of the batches", choices=("jsonl", "jsonl.gz", "parquet")
    )
    batches: int = setting(4, "number of delivery batches (batch-0000, ...), split by client time")
    shards: int = setting(0, "files per batch (users are split over them); 0: min(users, 8)")
    workers: int = setting(0, "worker processes; 0: number of CPUs (output does not depend on it)")
    # --- user behaviour ---
    sessions_per_day: float = setting(
        2.0, "mean number of sessions a user works per day (at least 1)"
    )
    session_minutes: float = setting(20.0, "mean active minutes of one session")
    typing_cps: float = setting(
        4.0, "mean typing speed in characters per second (users vary around it)"
    )
    request_rate: float = setting(0.12, "chance that a typed chunk triggers a completion request")
    attention: float = setting(
        0.4, "mean chance that a user reads a proposal at all (else it is typed over)"
    )
    accept_similarity: float = setting(
        0.75, "mean similarity to the intended code at or above which a user accepts (users vary)"
    )
    partial_accept_rate: float = setting(
        0.15, "chance that an acceptable proposal is accepted word by word"
    )
    hasty_accept_rate: float = setting(
        0.08, "chance that a poor proposal is accepted anyway (then fixed or deleted)"
    )
    ignore_rate: float = setting(
        0.5, "chance that a refused proposal is ignored (typed over) rather than rejected"
    )
    deferred_fix_rate: float = setting(
        0.2, "chance that an accepted proposal's fixes are made later, after more typing"
    )
    typo_rate: float = setting(0.03, "chance that a typed chunk holds a typo, fixed with backspace")
    side_edit_rate: float = setting(
        0.01, "chance per chunk of an edit elsewhere in the document (offsets shift)"
    )
    languages_per_user: int = setting(3, "documents a user keeps open at a time")
    write_docs: bool = setting(
        False,
        "also write docs/part-*.jsonl: each document's first and last text (for replay checks)",
    )
    # --- truth ---
    refine_window_s: int = setting(600, "the pipeline's refine window used for the ground truth")
    session_gap_s: int = setting(1800, "the pipeline's session gap used for the ground truth")
    min_refine_similarity: float = setting(
        0.5, "the pipeline's refined/rewritten threshold used for the truth"
    )

    def validate(self) -> None:
        if self.users < 1 or self.days < 1:
            raise ConfigError("users and days must be at least 1")
        if self.batches < 1:
            raise ConfigError("batches must be at least 1")
        if not self.models:
            raise ConfigError("models must name at least one model id")
        if len(self.model_quality) not in (1, len(self.models)):
            raise ConfigError("model_quality needs one value per model id (or a single value)")
        if self.session_gap_s < self.refine_window_s:
            raise ConfigError(
                "the simulator's truth assumes session_gap_s >= refine_window_s "
                f"(got {self.session_gap_s} < {self.refine_window_s})"
            )
        if self.shards < 0 or self.workers < 0:
            raise ConfigError("shards and workers must be >= 0")

    @property
    def n_shards(self) -> int:
        return self.shards or min(self.users, 8)


#: the rates of each preset; a rate given explicitly (>= 0) overrides the preset
FAULT_PRESETS: dict[str, dict[str, float]] = {
    "none": {},
    "light": {
        "duplicate_rate": 0.01,
        "late_rate": 0.01,
        "clock_skew_rate": 0.2,
        "out_of_order_rate": 0.02,
        "lost_edit_rate": 0.0005,
        "ambiguous_version_rate": 0.0002,
        "invalid_json_rate": 0.0005,
        "missing_field_rate": 0.0005,
        "wrong_type_rate": 0.0005,
        "unknown_event_type_rate": 0.0003,
        "negative_value_rate": 0.0003,
        "text_too_large_rate": 0.00002,
        "conflicting_duplicate_rate": 0.0003,
    },
    "heavy": {
        "duplicate_rate": 0.05,
        "late_rate": 0.05,
        "clock_skew_rate": 0.5,
        "out_of_order_rate": 0.1,
        "lost_edit_rate": 0.003,
        "ambiguous_version_rate": 0.001,
        "invalid_json_rate": 0.003,
        "missing_field_rate": 0.003,
        "wrong_type_rate": 0.003,
        "unknown_event_type_rate": 0.002,
        "negative_value_rate": 0.002,
        "text_too_large_rate": 0.0001,
        "conflicting_duplicate_rate": 0.002,
    },
}

MALFORMED_KINDS = (
    "invalid_json",
    "missing_field",
    "wrong_type",
    "unknown_event_type",
    "negative_value",
    "text_too_large",
    "conflicting_duplicate",
)


@dataclass(frozen=True)
class FaultConfig(Validated):
    """Transport faults. Rates are per clean event (lost/ambiguous: per edit; skew: per user)."""

    faults: str = setting("light", "fault preset", choices=tuple(FAULT_PRESETS))
    duplicate_rate: float = setting(
        -1.0, "same record delivered again (same or a later batch); -1: preset"
    )
    late_rate: float = setting(
        -1.0, "record delivered in a later batch than its time says; -1: preset"
    )
    clock_skew_rate: float = setting(
        -1.0, "share of users whose device clock is skewed; -1: preset"
    )
    clock_skew_max_s: float = setting(300.0, "largest clock skew in seconds (either sign)")
    out_of_order_rate: float = setting(
        -1.0, "record written some lines after its place; -1: preset"
    )
    lost_edit_rate: float = setting(-1.0, "edit never delivered (a lost version); -1: preset")
    ambiguous_version_rate: float = setting(
        -1.0, "second, different edit with the same doc_version (another device); -1: preset"
    )
    invalid_json_rate: float = setting(
        -1.0, "extra record that is not JSON / not UTF-8 / has NaN; -1: preset"
    )
    missing_field_rate: float = setting(-1.0, "extra record missing a required field; -1: preset")
    wrong_type_rate: float = setting(
        -1.0, "extra record with a field of the wrong type; -1: preset"
    )
    unknown_event_type_rate: float = setting(
        -1.0, "extra record of an unknown event_type; -1: preset"
    )
    negative_value_rate: float = setting(
        -1.0, "extra record with a negative offset/length/version; -1: preset"
    )
    text_too_large_rate: float = setting(-1.0, "extra record with a text over 1 MiB; -1: preset")
    conflicting_duplicate_rate: float = setting(
        -1.0, "same event_id again with different content, delivered after the original; -1: preset"
    )

    def validate(self) -> None:
        for f in dataclasses.fields(self):
            if f.name.endswith("_rate") and getattr(self, f.name) > 1:
                raise ConfigError(f"setting {f.name}: a rate must be in [0, 1], got {getattr(self, f.name)}")

    def rates(self) -> dict[str, float]:
        """The effective rate of every fault (preset, overridden by explicit values)."""
        preset = FAULT_PRESETS[self.faults]
        out: dict[str, float] = {}
        for f in dataclasses.fields(self):
            if not f.name.endswith("_rate"):
                continue
            value = getattr(self, f.name)
            rate = float(value) if value >= 0 else preset.get(f.name, 0.0)
            out[f.name[: -len("_rate")]] = rate
        return out
