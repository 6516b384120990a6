"""The data contract's names, in one place (``../shared/CONTRACT.md``, v1).

Pure Python, no Spark: validation, the table schemas, the stages, the simulator, the
tests and the docs all take the contract's event types, fields, quarantine reasons (in
their order), outcomes and setting defaults from here.
"""

from __future__ import annotations

from typing import Final

# -- 1. Telemetry events -------------------------------------------------------------------
SHOWN: Final = "shown"
ACCEPTED: Final = "accepted"
REJECTED: Final = "rejected"
EDIT: Final = "edit"
EVENT_TYPES: Final = (SHOWN, ACCEPTED, REJECTED, EDIT)

#: Field kinds: "s" a string, "i" an int64 (JSON integer).
STRING, INT = "s", "i"

#: Fields on every event: required, then optional.
COMMON_REQUIRED: Final[dict[str, str]] = {
    "event_id": STRING, "event_type": STRING, "ts_ms": INT, "user_id": STRING, "doc_id": STRING,
    "doc_version": INT,
}  # fmt: skip
COMMON_OPTIONAL: Final[dict[str, str]] = {"language": STRING, "client": STRING}

#: Per event type: (required fields, optional fields).
TYPE_FIELDS: Final[dict[str, tuple[dict[str, str], dict[str, str]]]] = {
    SHOWN: (
        {"suggestion_id": STRING, "model_id": STRING, "offset": INT, "text": STRING, "prefix": STRING},
        {"suffix": STRING, "latency_ms": INT},
    ),
    ACCEPTED: ({"suggestion_id": STRING, "offset": INT, "accepted_text": STRING}, {}),
    REJECTED: ({"suggestion_id": STRING}, {"reason": STRING}),
    EDIT: ({"offset": INT, "delete_len": INT, "insert_text": STRING}, {}),
}

#: Every event field, in bronze column order.
EVENT_COLUMNS: Final = (
    "event_id", "event_type", "ts_ms", "user_id", "doc_id", "doc_version", "language", "client",
    "suggestion_id", "model_id", "offset", "text", "prefix", "suffix", "latency_ms",
    "accepted_text", "reason", "delete_len", "insert_text",
)  # fmt: skip


def field_kind(name: str) -> str:
    """``"s"`` or ``"i"`` for any event field."""
    if name in COMMON_REQUIRED:
        return COMMON_REQUIRED[name]
    if name in COMMON_OPTIONAL:
        return COMMON_OPTIONAL[name]
    for required, optional in TYPE_FIELDS.values():
        if name in required:
            return required[name]
        if name in optional:
            return optional[name]
    raise KeyError(name)


#: ``rejected.reason`` values the contract lists (others are kept as they are).
REJECT_REASONS: Final = ("escape", "typed_over", "timeout", "other")

# -- 1.2 Bad input ---------------------------------------------------------------------------
INVALID_JSON: Final = "invalid_json"
MISSING_FIELD: Final = "missing_field"
WRONG_TYPE: Final = "wrong_type"
UNKNOWN_EVENT_TYPE: Final = "unknown_event_type"
NEGATIVE_VALUE: Final = "negative_value"
TEXT_TOO_LARGE: Final = "text_too_large"
CONFLICTING_DUPLICATE: Final = "conflicting_duplicate"
#: Quarantine reasons; a record gets the first that applies, in this order (the last one is
#: decided against other records, not by the record alone).
REASONS: Final = (
    INVALID_JSON, MISSING_FIELD, WRONG_TYPE, UNKNOWN_EVENT_TYPE, NEGATIVE_VALUE, TEXT_TOO_LARGE,
    CONFLICTING_DUPLICATE,
)  # fmt: skip
#: Fields that must not be below 0 (an offset, a length, a version).
NON_NEGATIVE: Final = ("offset", "delete_len", "doc_version")
#: Text fields limited to :data:`MAX_TEXT_BYTES` bytes of UTF-8.
TEXT_FIELDS: Final = ("text", "prefix", "suffix", "accepted_text", "insert_text")
MAX_TEXT_BYTES: Final = 1_048_576
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1

# -- 2-3. Sessions and outcomes -------------------------------------------------------------
SESSION_GAP_S: Final = 1800
REFINE_WINDOW_S: Final = 600
MIN_REFINE_SIMILARITY: Final = 0.5

KEPT: Final = "kept"
REFINED: Final = "refined"
REWRITTEN: Final = "rewritten"
DELETED: Final = "deleted"
REPLAY_GAP: Final = "replay_gap"
REJECTED_OUTCOME: Final = "rejected"
IGNORED: Final = "ignored"
ORPHAN: Final = "orphan"
OUTCOMES: Final = (KEPT, REFINED, REWRITTEN, DELETED, REPLAY_GAP, REJECTED_OUTCOME, IGNORED, ORPHAN)
#: Outcomes that count as accepted in ``gold/acceptance_metrics`` (all but rejected, ignored).
ACCEPTED_OUTCOMES: Final = (KEPT, REFINED, REWRITTEN, DELETED, REPLAY_GAP, ORPHAN)
#: Outcomes that become refinement pairs.
PAIR_OUTCOMES: Final = (KEPT, REFINED)

# -- 5. Outputs ------------------------------------------------------------------------------
SPLITS: Final = ("train", "val", "test")
