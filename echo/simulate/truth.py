"""Ground truth: the outcome CONTRACT.md section 3 implies for every suggestion.

This is the simulator's own implementation of the contract, independent of the
pipeline (it never imports ``echo.stages`` or ``echo.jobs``). It works live: every
change the simulated user makes to a document goes through :meth:`DocTruth.change`,
which walks the tracked region of every accepted suggestion of that document exactly
as the contract's replay does.

Why live tracking equals the contract's walk: a user's events are generated in time
order, so a document's versions rise with ``ts_ms``; and since ``session_gap_s >=
refine_window_s`` (checked by the config), no change of the same user can fall after
the end of the accept's session but before ``accept ts + refine_window_s``, so the
horizon is ``accept ts + refine_window_s``.

Faults are marked, not simulated here: a lost edit inside an open window, or a
version held by two different changes, marks the suggestions whose walk it reaches
(``touched``); their clean outcome is kept, the delivered one is expected to be
``replay_gap`` (or an earlier final text).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from rapidfuzz.distance import Levenshtein

TRUTH_COLUMNS = (
    "suggestion_id",
    "user_id",
    "doc_id",
    "model_id",
    "language",
    "shown_ts_ms",
    "proposal",
    "accepted_text",
    "final_text",
    "outcome",
    "edit_similarity",
    "n_refine_edits",
    "intent",
    "touched",
    "faults",
)


def edit_similarity(a: str, b: str) -> float:
    return 1.0 - Levenshtein.distance(a, b) / max(len(a), len(b), 1)


def outcome_of(
    accepted_full: str, final_text: str, min_refine_similarity: float
) -> tuple[str, float]:
    """(outcome, edit_similarity) of a finished walk, by the contract's precedence."""
    sim = edit_similarity(accepted_full, final_text)
    if final_text.strip() == "" and accepted_full.strip() != "":
        return "deleted", sim
    if final_text == accepted_full:
        return "kept", sim
    if sim >= min_refine_similarity:
        return "refined", sim
    return "rewritten", sim


@dataclass
class Suggestion:
    """What the simulator knows about one shown suggestion."""

    suggestion_id: str
    user_id: str
    doc_id: str
    model_id: str
    language: str
    shown_ts_ms: int
    proposal: str
    intent: str = "ignored"  # what the user model decided
    faults: set[str] = field(default_factory=set)


@dataclass
class Region:
    sug: Suggestion
    a: int
    b: int
    text: str
    full: str
    horizon: int
    n_changes: int = 0


class DocTruth:
    """The tracked regions of one document and the finished truth rows."""

    __slots__ = ("active", "min_sim", "rows", "window_ms")

    def __init__(self, window_ms: int, min_sim: float, rows: list[dict[str, Any]]) -> None:
        self.window_ms = window_ms
        self.min_sim = min_sim
        self.active: list[Region] = []
        self.rows = rows

    def region_of(self, suggestion_id: str) -> Region | None:
        for r in self.active:
            if r.sug.suggestion_id == suggestion_id:
                return r
        return None

    def change(
        self,
        ts: int,
        offset: int,
        delete_len: int,
        insert: str,
        *,
        accept_of: Suggestion | None = None,
        first_accept: bool = False,
        lost: bool = False,
        ambiguous: bool = False,
    ) -> None:
        """Apply one change (an edit, or an accept of ``accept_of``) to every open walk;
        ``first_accept`` starts the suggestion's own walk after it."""
        keep: list[Region] = []
        for r in self.active:
            if ambiguous:  # rule 1 comes before the horizon check
                r.sug.faults.add("ambiguous_version")
            if ts > r.horizon:  # rule 2: the walk ends
                self._finish(r)
                continue
            if lost:  # rule 3 on the delivered data: a lost version inside the window
                r.sug.faults.add("lost_edit")
            keep.append(r)
            if accept_of is r.sug and offset == r.b and delete_len == 0:
                r.text += insert
                r.full += insert
                r.b += len(insert)
            elif offset + delete_len <= r.a:
                shift = len(insert) - delete_len
                r.a += shift
                r.b += shift
            elif offset >= r.b:
                pass
            else:
                r.text = (
                    r.text[: max(0, offset - r.a)] + insert + r.text[offset + delete_len - r.a :]
                )
                r.a = min(r.a, offset)
                r.b = r.a + len(r.text)
                r.n_changes += 1
        self.active = keep
        if accept_of is not None and first_accept:
            self.active.append(
                Region(accept_of, offset, offset + len(insert), insert, insert, ts + self.window_ms)
            )

    def close(self) -> None:
        for r in self.active:
            self._finish(r)
        self.active = []

    def _finish(self, r: Region) -> None:
        outcome, sim = outcome_of(r.full, r.text, self.min_sim)
        self.rows.append(row_of(r.sug, outcome, r.full, r.text, sim, r.n_changes))


def row_of(
    s: Suggestion,
    outcome: str,
    accepted_text: str | None,
    final_text: str | None,
    similarity: float | None,
    n_changes: int,
) -> dict[str, Any]:
    return {
        "suggestion_id": s.suggestion_id,
        "user_id": s.user_id,
        "doc_id": s.doc_id,
        "model_id": s.model_id,
        "language": s.language,
        "shown_ts_ms": s.shown_ts_ms,
        "proposal": s.proposal,
        "accepted_text": accepted_text,
        "final_text": final_text,
        "outcome": outcome,
        "edit_similarity": similarity,
        "n_refine_edits": n_changes,
        "intent": s.intent,
        "touched": bool(s.faults),
        "faults": ",".join(sorted(s.faults)),
    }
