"""A document's changes grouped by version, shared by the region walks of
:mod:`echo.stages.replay` (the contract's walk), :mod:`echo.stages.typed` (typed
instead) and :mod:`echo.stages.retention` (retention at horizons).

Identical changes at one version count as one (the earliest by ``(ts_ms, event_id)``,
except that an ``accepted`` of the tracked suggestion wins); two or more different
contents at one version make it ``ambiguous`` (a history that cannot be replayed).
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["Change", "VersionGroups", "change_of", "order_key", "reach", "reach_scan", "representative", "version_groups"]

CHANGE_TYPES = ("accepted", "edit")

#: A change, precomputed for the walk: (ts_ms, offset, delete_len, text, suggestion_id of
#: an ``accepted``, None for an ``edit``).
Change = tuple[int, int, int, str, Any]


def order_key(ev: Mapping[str, Any]) -> tuple[int, str]:
    return (int(ev["ts_ms"]), str(ev["event_id"]))


@dataclass(frozen=True)
class VersionGroups:
    """All changes of a document, by version, as parallel lists (the walks' hot loops
    read them by index)."""

    versions: list[int]  # ascending
    ambiguous: list[bool]  # two or more different contents at that version
    first: list[Change]  # the earliest change by (ts_ms, event_id)
    several: list[tuple[Change, ...] | None]  # all changes, when more than one
    # for :func:`reach`: the index where a scan entering index i stops for a lost or an
    # ambiguous version (len(versions): never), the earliest change's ts_ms per index,
    # and whether those never decrease (then the horizon's stop is a bisection)
    stops: list[int]
    ts: list[int]
    ts_ascending: bool


def representative(first: Change, several: tuple[Change, ...] | None, suggestion_id: Any) -> Change:
    """The earliest change, or an ``accepted`` of the tracked suggestion if any."""
    if several is not None:
        for change in several:
            if change[4] == suggestion_id:
                return change
    return first


def change_of(ev: Mapping[str, Any]) -> Change:
    if ev["event_type"] == "accepted":
        return (int(ev["ts_ms"]), int(ev["offset"]), 0, ev["accepted_text"] or "", ev["suggestion_id"])
    return (int(ev["ts_ms"]), int(ev["offset"]), int(ev["delete_len"] or 0), ev["insert_text"] or "", None)


def version_groups(events: Sequence[Mapping[str, Any]]) -> VersionGroups:
    by_version: dict[int, list[Mapping[str, Any]]] = {}
    for ev in events:
        if ev["event_type"] in CHANGE_TYPES:
            by_version.setdefault(int(ev["doc_version"]), []).append(ev)
    versions: list[int] = []
    ambiguous: list[bool] = []
    first: list[Change] = []
    several: list[tuple[Change, ...] | None] = []
    for version in sorted(by_version):
        evs = by_version[version]
        versions.append(version)
        if len(evs) == 1:  # the common case: one change per version
            first.append(change_of(evs[0]))
            ambiguous.append(False)
            several.append(None)
            continue
        changes = tuple(change_of(ev) for ev in sorted(evs, key=order_key))
        first.append(changes[0])
        ambiguous.append(len({c[1:4] for c in changes}) > 1)
        several.append(changes)
    n = len(versions)
    stops = [n] * n
    stop = n
    for i in range(n - 1, -1, -1):
        if ambiguous[i]:
            stop = i
        elif i + 1 < n and versions[i + 1] != versions[i] + 1:
            stop = i + 1
        stops[i] = stop
    ts = [c[0] for c in first]
    ascending = all(a <= b for a, b in itertools.pairwise(ts))
    return VersionGroups(versions, ambiguous, first, several, stops, ts, ascending)


def reach(start_version: int, horizon_ts_ms: int, groups: VersionGroups) -> int | None:
    """The highest version a scan of ``groups`` can read when it starts expecting
    ``start_version`` (then +1, +2, ...) and stops at a missing version, at an ambiguous
    expected version or at a change later than ``horizon_ts_ms``: the version where the
    scan stops, or None when it runs out of versions (it could read any later one).

    Every walk of this module's users (the contract's walk, typed instead, retention)
    stops at one of these conditions or earlier when its horizon is at most
    ``horizon_ts_ms`` (their ``ts`` is the representative's, never earlier than the
    version's earliest change, which this scan compares), so none of them reads a version
    above the returned one: changes at higher versions cannot alter their results
    (docs/architecture.md, "Bounded replay").
    """
    versions = groups.versions
    n = len(versions)
    i = bisect.bisect_right(versions, start_version - 1)
    if i == n:
        return None
    if versions[i] != start_version:  # the start version is lost
        return versions[i]
    end = groups.stops[i]  # a lost or an ambiguous version stops it there
    ts = groups.ts
    if groups.ts_ascending:  # the first change past the horizon, if before that
        j = bisect.bisect_right(ts, horizon_ts_ms, i, end)
    else:
        j = i
        while j < end and ts[j] <= horizon_ts_ms:
            j += 1
    return versions[j] if j < n else None


def reach_scan(start_version: int, horizon_ts_ms: int, groups: VersionGroups) -> int | None:
    """:func:`reach` by its definition, one version at a time (what the tests compare it
    with)."""
    versions, ambiguous, first = groups.versions, groups.ambiguous, groups.first
    expected = int(start_version)
    for i in range(bisect.bisect_right(versions, expected - 1), len(versions)):
        version = versions[i]
        if version != expected or ambiguous[i] or first[i][0] > horizon_ts_ms:
            return version
        expected += 1
    return None
