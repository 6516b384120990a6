"""Pure per-document replay of suggestion outcomes (CONTRACT.md section 3).

:func:`replay_document` takes every event of ONE document (deduplicated by
``event_id``, any order) and returns one row per suggestion of that document: its
outcome, and for accepted suggestions the tracked region's final text. It is plain
Python (stdlib + rapidfuzz) so the track stage can call it inside Spark's
``groupBy("doc_id").applyInArrow(...)`` and tests can call it directly.

Choices where the contract is silent (also in the project docs):

* **Language fallback.** A row's ``language`` is the language of its (earliest) shown
  event; when that is null, the first non-null language of the suggestion's own events,
  then of any event of the document, each ordered by ``(ts_ms, event_id)``.
* **Identical changes at one version.** Changes at the same version with the same
  content ``(offset, delete_len, inserted text)`` count as one change (the content of an
  ``accepted`` is ``(offset, 0, accepted_text)``, per section 1.1). The representative
  is the earliest by ``(ts_ms, event_id)``, except that an ``accepted`` of the tracked
  suggestion wins (so a duplicate of its continued partial accept still continues it).
* **Orphans** take ``session_id``, ``user_id``, ``doc_id`` and ``language`` from their
  earliest event (the ``accepted`` with the lowest ``doc_version`` if there is one,
  else the earliest ``rejected`` by ``(ts_ms, event_id)``). When that event is an
  accept, ``accepted_text``, ``accepted_ts_ms``, ``accepted_doc_version`` and
  ``accepted_chars`` come from it; the walk columns stay null.
* ``accepted_chars``/``retained_chars`` are null for suggestions that were not accepted;
  ``retained_chars`` is null whenever ``final_text`` is.
"""

from __future__ import annotations

import bisect
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from rapidfuzz.distance import Indel, Levenshtein

from echo import contract
from echo.stages.region import VersionGroups as _VersionGroups
from echo.stages.region import order_key as _order_key
from echo.stages.region import reach as _reach
from echo.stages.region import representative as _representative
from echo.stages.region import version_groups as _version_groups
from echo.stages.retention import HORIZONS, RETENTION_COLUMNS, retention
from echo.stages.typed import SHAPE_KEYS, TYPED_COLUMNS, proposal_lines, typed_instead

__all__ = ["DEPENDENCY_COLUMNS", "OUTPUT_COLUMNS", "ReplaySettings", "edit_similarity", "replay_document"]


@dataclass(frozen=True)
class ReplaySettings:
    """The two settings of section 3 (CLI: ``--refine-window-s``,
    ``--min-refine-similarity``)."""

    refine_window_s: int = contract.REFINE_WINDOW_S
    min_refine_similarity: float = contract.MIN_REFINE_SIMILARITY


#: The keys of every row returned by :func:`replay_document`, in order.
OUTPUT_COLUMNS: tuple[str, ...] = (
    "suggestion_id",
    "session_id",
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
    "prefix",
    "suffix",
    "shown_offset",
    "latency_ms",
    "accepted_ts_ms",
    "accepted_doc_version",
    "horizon_ts_ms",
    "walk_end",
    "changes_applied",
    "accepted_chars",
    "retained_chars",
    *TYPED_COLUMNS,
    *RETENTION_COLUMNS,
)


#: What a row depends on, per suggestion (``dependencies=True``): the lowest and highest
#: ``doc_version`` of its own events and the highest version any of its walks can read
#: (None: unbounded, the walk ran out of versions). docs/architecture.md, "Bounded replay".
DEPENDENCY_COLUMNS: tuple[str, ...] = ("lo_version", "hi_version", "reach_version")
#: The longest horizon after an accept that a walk reads (retention's last).
_LONGEST_HORIZON_S = max(seconds for _, seconds in HORIZONS)
#: ``doc_language`` not given: the first language of ``events`` is the document's.
_FROM_EVENTS: Any = object()


def edit_similarity(accepted_full: str, final_text: str) -> float:
    """``1 - levenshtein(a, f) / max(len(a), len(f), 1)`` over code points."""
    denom = max(len(accepted_full), len(final_text), 1)
    return 1.0 - Levenshtein.distance(accepted_full, final_text) / denom


def _lcs_len(a: str, b: str) -> int:
    return (len(a) + len(b) - Indel.distance(a, b)) // 2


def _accept_key(ev: Mapping[str, Any]) -> tuple[int, int, str]:
    return (int(ev["doc_version"]), int(ev["ts_ms"]), str(ev["event_id"]))


@dataclass
class _Walk:
    accepted_full: str
    final_text: str | None
    walk_end: str
    applied: int
    horizon_ts_ms: int
    last_change_ts_ms: int | None  # the last applied change that altered the region's text


def _walk(accept: Mapping[str, Any], groups: _VersionGroups, settings: ReplaySettings) -> _Walk:
    """Track the region inserted by ``accept`` through the later changes."""
    sid = accept["suggestion_id"]
    text: str = accept["accepted_text"] or ""
    full = text
    a = int(accept["offset"])
    b = a + len(text)
    horizon = min(
        int(accept["ts_ms"]) + int(settings.refine_window_s) * 1000,
        int(accept["session_end_ts_ms"]),
    )
    expected = int(accept["doc_version"]) + 1
    applied = 0
    last_ts: int | None = None
    end = "exhausted"
    versions, ambiguous, first, several = groups.versions, groups.ambiguous, groups.first, groups.several
    for i in range(bisect.bisect_right(versions, expected - 1), len(versions)):
        version = versions[i]
        # 1. ambiguity of the expected version, before anything else
        if version == expected and ambiguous[i]:
            end = "ambiguous"
            break
        ts, p, d, s, change_sid = first[i] if several[i] is None else _representative(first[i], several[i], sid)
        # 2. past the horizon (a change exactly at the horizon is still applied)
        if ts > horizon:
            end = "horizon"
            break
        # 3. a lost change
        if version != expected:
            end = "lost"
            break
        # 4. apply
        if change_sid is not None and change_sid == sid and p == b:
            text += s
            full += s
            b += len(s)
            last_ts = ts if s else last_ts
        elif p + d <= a:
            a += len(s) - d
            b += len(s) - d
        elif p >= b:
            pass
        else:
            before = text
            text = text[: max(0, p - a)] + s + text[p + d - a :]
            a = min(a, p)
            b = a + len(text)
            last_ts = ts if text != before else last_ts
        applied += 1
        expected += 1
    final = None if end in ("lost", "ambiguous") else text
    return _Walk(full, final, end, applied, horizon, last_ts)


def _outcome(accepted_full: str, final_text: str, sim: float, settings: ReplaySettings) -> str:
    if final_text.strip() == "" and accepted_full.strip() != "":
        return "deleted"
    if final_text == accepted_full:
        return "kept"
    if sim >= settings.min_refine_similarity:
        return "refined"
    return "rewritten"


def _first_language(events: Sequence[Mapping[str, Any]]) -> str | None:
    for ev in sorted(events, key=_order_key):
        if ev.get("language") is not None:
            return str(ev["language"])
    return None


def _is_null(value: Any) -> bool:
    """None, a float NaN or pandas' ``NA``: how a null reaches us from ``applyInPandas``."""
    if value is None:
        return True
    if isinstance(value, float):
        return value != value
    return type(value).__name__ in ("NAType", "NaTType")


def _clean(event: Mapping[str, Any]) -> dict[str, Any]:
    return {key: None if _is_null(value) else value for key, value in event.items()}


def _empty_row() -> dict[str, Any]:
    return dict.fromkeys(OUTPUT_COLUMNS)


def replay_document(
    events: Sequence[Mapping[str, Any]],
    settings: ReplaySettings,
    *,
    clean: bool = True,
    shown_key: str | None = None,
    doc_language: str | None = _FROM_EVENTS,
    dependencies: bool = False,
) -> list[dict[str, Any]]:
    """One row per suggestion of one document (see the module docstring).

    ``events``: every event of one document, deduplicated by ``event_id``, in any order,
    each with the event fields plus ``session_id`` and ``session_end_ts_ms`` (the
    ``ts_ms`` of the last event of its session). Nulls may be None, NaN or pandas'
    ``NA`` (as pandas hands them over). Rows are sorted by ``suggestion_id``.

    ``clean=False`` skips the null normalization (events from Arrow, where nulls are
    None). With ``shown_key``, each row also gets ``row[shown_key]`` = that key of the
    chosen shown event (None without one): the track stage passes a row index there and
    takes the wide pass-through columns (``text``, ``prefix``, ``suffix``) with Arrow
    instead of shipping them through Python.

    ``doc_language``: the document's first language (the last fallback of a row's
    language), when ``events`` are not all of the document's events (a bounded replay).
    ``dependencies=True`` adds :data:`DEPENDENCY_COLUMNS` to every row.
    """
    if clean:
        events = [_clean(ev) for ev in events]
    by_suggestion: dict[Any, list[Mapping[str, Any]]] = {}
    for ev in events:
        if ev["event_type"] in ("shown", "accepted", "rejected"):
            sid = ev.get("suggestion_id")
            if sid is not None:
                by_suggestion.setdefault(sid, []).append(ev)

    groups: _VersionGroups | None = None
    doc_language_done = doc_language is not _FROM_EVENTS
    if not doc_language_done:
        doc_language = None

    rows: list[dict[str, Any]] = []
    for sid in sorted(by_suggestion, key=str):
        evs = by_suggestion[sid]
        shown = [ev for ev in evs if ev["event_type"] == "shown"]
        accepts = sorted((ev for ev in evs if ev["event_type"] == "accepted"), key=_accept_key)
        rejects = sorted((ev for ev in evs if ev["event_type"] == "rejected"), key=_order_key)
        row = _empty_row()
        row["suggestion_id"] = sid
        if shown_key is not None:
            row[shown_key] = None

        if not shown:
            first = accepts[0] if accepts else rejects[0]
            row.update(
                session_id=first["session_id"],
                user_id=first["user_id"],
                doc_id=first["doc_id"],
                language=first.get("language"),
                outcome="orphan",
            )
            if accepts:
                row.update(
                    accepted_text=first["accepted_text"],
                    accepted_ts_ms=int(first["ts_ms"]),
                    accepted_doc_version=int(first["doc_version"]),
                    accepted_chars=len(first["accepted_text"] or ""),
                )
            if dependencies:
                _depends(row, evs, False)
            rows.append(row)
            continue

        s = min(shown, key=_order_key) if len(shown) > 1 else shown[0]
        if shown_key is not None:
            row[shown_key] = s.get(shown_key)
        language = s.get("language")
        if language is None:
            language = _first_language(evs)
        if language is None:
            if not doc_language_done:
                doc_language = _first_language(events)
                doc_language_done = True
            language = doc_language
        row.update(
            session_id=s["session_id"],
            user_id=s["user_id"],
            doc_id=s["doc_id"],
            model_id=s.get("model_id"),
            language=language,
            shown_ts_ms=int(s["ts_ms"]),
            proposal=s.get("text"),
            prefix=s.get("prefix"),
            suffix=s.get("suffix"),
            shown_offset=None if s.get("offset") is None else int(s["offset"]),
            latency_ms=None if s.get("latency_ms") is None else int(s["latency_ms"]),
        )

        if not accepts:
            row["outcome"] = "rejected" if rejects else "ignored"
            if groups is None:
                groups = _version_groups(events)
            shape = proposal_lines(s.get("text")) if "text" in s else (int(s[SHAPE_KEYS[0]]), bool(s[SHAPE_KEYS[1]]))
            horizon = min(int(s["ts_ms"]) + int(settings.refine_window_s) * 1000, int(s["session_end_ts_ms"]))
            typed = typed_instead(int(s["offset"]), int(s["doc_version"]), horizon, shape, groups)
            row.update(typed_text=typed.text, typed_end_ts_ms=typed.end_ts_ms, typed_end=typed.end)
            if dependencies:
                window_ms = int(settings.refine_window_s) * 1000
                _depends(row, evs, _reach(int(s["doc_version"]) + 1, int(s["ts_ms"]) + window_ms, groups))
            rows.append(row)
            continue

        if groups is None:
            groups = _version_groups(events)
        first_accept = accepts[0]
        walk = _walk(first_accept, groups, settings)
        row.update(
            accepted_text=walk.accepted_full,
            accepted_ts_ms=int(first_accept["ts_ms"]),
            accepted_doc_version=int(first_accept["doc_version"]),
            horizon_ts_ms=walk.horizon_ts_ms,
            walk_end=walk.walk_end,
            changes_applied=walk.applied,
            accepted_chars=len(walk.accepted_full),
        )
        if walk.final_text is None:
            row["outcome"] = "replay_gap"
        else:
            sim = edit_similarity(walk.accepted_full, walk.final_text)
            row.update(
                final_text=walk.final_text,
                edit_similarity=sim,
                outcome=_outcome(walk.accepted_full, walk.final_text, sim, settings),
                retained_chars=_lcs_len(walk.accepted_full, walk.final_text),
            )
            if row["outcome"] == "rewritten":  # typed instead: the contract's final text
                row.update(typed_text=walk.final_text, typed_end_ts_ms=walk.last_change_ts_ms, typed_end="final")
        row.update(retention(first_accept, walk.accepted_full, groups))
        if dependencies:
            longest = max(int(settings.refine_window_s), _LONGEST_HORIZON_S) * 1000
            _depends(row, evs, _reach(int(first_accept["doc_version"]) + 1, int(first_accept["ts_ms"]) + longest, groups))
        rows.append(row)
    return rows


def _depends(row: dict[str, Any], own: Sequence[Mapping[str, Any]], scan_reach: int | bool | None) -> None:
    """Set the row's :data:`DEPENDENCY_COLUMNS` from its own events and ``scan_reach``,
    where its walk stops (:func:`echo.stages.region.reach`; None: it can read any later
    version; False: no walk, an orphan depends on its own events only)."""
    versions = [int(ev["doc_version"]) for ev in own]
    lo, hi = min(versions), max(versions)
    row["lo_version"], row["hi_version"] = lo, hi
    row["reach_version"] = hi if scan_reach is False else (None if scan_reach is None else max(hi, int(scan_reach)))
