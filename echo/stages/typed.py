"""Typed instead: what the user wrote at a suggestion's position (docs/signals.md).

Pure Python, called by :func:`echo.stages.replay.replay_document` for every
``rejected`` or ``ignored`` suggestion (a ``rewritten`` one takes the contract's
``final_text``). The rule, in short (docs/signals.md has it in full):

* The typed region starts empty at the shown ``offset``, ``[a, b) = [offset, offset)``,
  text ``T = ""``. The walk goes through the document's changes with version >
  the shown ``doc_version`` in version order, with the contract's checks (an ambiguous
  expected version or a lost one ends it with ``gap``; a change past the horizon ends it).
* The horizon is ``min(shown.ts_ms + refine_window_s * 1000, end of the shown's
  session)``, as the contract caps an accept's.
* A change ``(p, d, s)`` with ``p == b`` (at the end of the typed text, the caret)
  extends it: ``T += s``, ``b += len(s)`` (the ``d`` characters it deletes lie after the
  region). Otherwise the contract's region rules: before (``p + d <= a``) shifts, after
  (``p >= b``) does nothing, an overlap replaces the overlapped part of ``T``.
* The typed text ends at the first change after which ``T`` holds as many lines as the
  proposal (:func:`line_cut`): ``T`` is cut there (``typed_end = "lines"``); else at the
  horizon (``"horizon"``) or the last change (``"exhausted"``) with ``T`` as it is.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass

from echo.stages.region import VersionGroups

__all__ = ["SHAPE_KEYS", "TYPED_COLUMNS", "TYPED_OUTCOMES", "Typed", "line_cut", "proposal_lines", "typed_instead"]

#: The outcomes that get a typed text.
TYPED_OUTCOMES = ("rejected", "ignored", "rewritten")
#: The silver/suggestions columns this module fills.
TYPED_COLUMNS = ("typed_text", "typed_end_ts_ms", "typed_end")
#: Keys of a shown event holding :func:`proposal_lines` of its ``text`` when the event
#: comes without the text (the track stage keeps wide texts out of Python).
SHAPE_KEYS = ("_proposal_newlines", "_proposal_ends_nl")


@dataclass(frozen=True)
class Typed:
    """The typed text (None after a gap), the ``ts_ms`` of the change that made it
    final (None when nothing was typed), why it ended (``lines`` | ``horizon`` |
    ``exhausted`` | ``gap``) and how many changes altered it."""

    text: str | None
    end_ts_ms: int | None
    end: str
    changes: int


def proposal_lines(proposal: str | None) -> tuple[int, bool]:
    """``(line breaks in the proposal, whether it ends with one)``: all :func:`line_cut`
    needs (the track stage computes it in Arrow, without the text in Python)."""
    p = proposal or ""
    return p.count("\n"), p.endswith("\n")


def line_cut(text: str, newlines: int, ends_with_newline: bool) -> int | None:
    """Where a typed text holding as many lines as the proposal ends, or None while it
    holds fewer: right after its ``newlines``-th line break when the proposal ends with
    one, else right before its ``newlines + 1``-th (a one-line proposal: the typed text
    up to the first line break)."""
    want = newlines if ends_with_newline else newlines + 1
    idx = -1
    for _ in range(want):
        idx = text.find("\n", idx + 1)
        if idx < 0:
            return None
    return idx + 1 if ends_with_newline else idx


def typed_instead(
    offset: int,
    shown_version: int,
    horizon_ts_ms: int,
    proposal_shape: tuple[int, bool],
    groups: VersionGroups,
) -> Typed:
    """The text typed at ``offset`` after the shown event at ``shown_version`` (see the
    module docstring). ``proposal_shape`` is :func:`proposal_lines` of the proposal."""
    newlines, ends_nl = proposal_shape
    a = b = int(offset)
    text = ""
    expected = int(shown_version) + 1
    last_ts: int | None = None
    altered = 0
    end = "exhausted"
    versions, ambiguous, first = groups.versions, groups.ambiguous, groups.first
    for i in range(bisect.bisect_right(versions, expected - 1), len(versions)):
        version = versions[i]
        if version == expected and ambiguous[i]:
            return Typed(None, None, "gap", altered)
        ts, p, d, s, _ = first[i]
        if ts > horizon_ts_ms:
            end = "horizon"
            break
        if version != expected:
            return Typed(None, None, "gap", altered)
        before = text
        if p == b:  # at the caret: typing on
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
        if text != before:
            altered += 1
            last_ts = ts
            cut = line_cut(text, newlines, ends_nl)
            if cut is not None:
                return Typed(text[:cut], ts, "lines", altered)
        expected += 1
    return Typed(text, last_ts, end, altered)
