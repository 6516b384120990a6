"""Retention at horizons: characters of the accepted text still present 30 s, 2, 5, 10
and 15 minutes after the accept (docs/signals.md).

Pure Python, called by :func:`echo.stages.replay.replay_document` for every accepted
suggestion. For each horizon ``H``, the tracked region is walked exactly as the
contract's walk (section 3: the same region rules, continued partial accepts, the same
checks in the same order) with the horizon ``A.ts_ms + H`` in place of the refine
window, and ``retained_H = LCS(accepted_text, region text)`` in code points (the same
measure as ``retained_chars``). The value is None (unknown) when the horizon lies past
the end of the accept's session (nothing was observed up to it) or when the walk meets
a lost or ambiguous version before reaching it. One walk serves all five horizons.
"""

from __future__ import annotations

import bisect
from collections.abc import Mapping
from typing import Any

from rapidfuzz.distance import Indel

from echo.stages.region import VersionGroups, representative

__all__ = ["HORIZONS", "RETENTION_COLUMNS", "retention"]

#: (column suffix, seconds after the accept): the horizons GitHub Copilot, Sourcegraph
#: Cody and VS Code's survival tracking report.
HORIZONS: tuple[tuple[str, int], ...] = (("30s", 30), ("2m", 120), ("5m", 300), ("10m", 600), ("15m", 900))
RETENTION_COLUMNS: tuple[str, ...] = tuple(f"retained_{name}" for name, _ in HORIZONS)


def _lcs_len(a: str, b: str) -> int:
    return (len(a) + len(b) - Indel.distance(a, b)) // 2


def retention(accept: Mapping[str, Any], accepted_full: str, groups: VersionGroups) -> dict[str, int | None]:
    """``{retained_30s: ..., retained_15m: ...}`` for the first ``accept`` of a suggestion
    (an event with ``session_end_ts_ms``); ``accepted_full`` is the row's ``accepted_text``."""
    out: dict[str, int | None] = dict.fromkeys(RETENTION_COLUMNS)
    accept_ts = int(accept["ts_ms"])
    session_end = int(accept["session_end_ts_ms"])
    limits = [accept_ts + seconds * 1000 for _, seconds in HORIZONS]
    known = [h <= session_end for h in limits]
    if not any(known):
        return out
    sid = accept["suggestion_id"]
    text: str = accept["accepted_text"] or ""
    a = int(accept["offset"])
    b = a + len(text)
    expected = int(accept["doc_version"]) + 1
    k = 0  # the next horizon to record
    n = len(limits)

    def record_upto(ts: int | None) -> None:
        nonlocal k
        while k < n and (ts is None or ts > limits[k]):
            if known[k]:
                out[RETENTION_COLUMNS[k]] = _lcs_len(accepted_full, text)
            k += 1

    versions, ambiguous, first, several = groups.versions, groups.ambiguous, groups.first, groups.several
    last_known = max(i for i in range(n) if known[i])
    for i in range(bisect.bisect_right(versions, expected - 1), len(versions)):
        version = versions[i]
        if version == expected and ambiguous[i]:
            return out  # a gap: every horizon not yet recorded stays unknown
        ts, p, d, s, change_sid = first[i] if several[i] is None else representative(first[i], several[i], sid)
        record_upto(ts)  # the horizons this change is past end their walks before it
        if k > last_known:
            return out
        if version != expected:
            return out
        if change_sid is not None and change_sid == sid and p == b:
            text += s
            b += len(s)
        elif p + d <= a:
            a += len(s) - d
            b += len(s) - d
        elif p >= b:
            pass
        else:
            text = text[: max(0, p - a)] + s + text[p + d - a :]
            a = min(a, p)
            b = a + len(text)
        expected += 1
    record_upto(None)  # no more changes: the text stands at every later horizon
    return out
