"""Tabby (TabbyML/tabby) event log -> contract events.

The Tabby server appends one ``LogEntry`` per line to its event log
(``~/.tabby/events/<date>.json``), serialised by serde from
``crates/tabby-common/src/api/event.rs``::

    {"ts": <ms since epoch>, "user": <optional string>, "event": {"<kind>": {...}}}

with ``<kind>`` one of (serde ``rename_all = "snake_case"``):

- ``completion``: ``completion_id``, ``language``, ``prompt``, ``segments`` (optional:
  ``prefix``, optional ``suffix``, ``clipboard``, ``git_url``, ``declarations``,
  ``filepath``), ``choices`` (``[{index, text}]``), ``user_agent`` (optional). Older
  servers put ``user`` inside the completion instead of the entry; both are read.
- ``view``: ``completion_id``, ``choice_index``, optional ``view_id``: a choice was shown.
- ``select``: ``completion_id``, ``choice_index``, optional ``kind`` (only ``"line"``),
  ``view_id``, ``elapsed``: the choice was accepted; ``kind: "line"`` is a partial accept.
- ``dismiss``: ``completion_id``, ``choice_index``, optional ``view_id``, ``elapsed``.
- ``chat_completion``: not a code completion; skipped (``chat_completion``).

Mapping (docs/importers.md has the full table):

- ``suggestion_id``: ``"tabby:<completion_id>:<choice_index>"``: each choice is its own
  proposal. ``user_id``: ``"tabby:" + sha256(user)[:16]``, ``user`` taken from the
  completion's entry (view/select/dismiss carry none); a server without authentication
  logs no user, then the ``anonymous_user`` setting is used.
- ``model_id``: the log does not name the model; the ``model_id`` setting (default
  ``tabby``). ``language``: the completion's ``language``; ``client``: ``user_agent``.
- Documents: Tabby logs neither file contents nor offsets, so each completion is its own
  document ``"tabby:<user>:<filepath>#<completion_id>"`` holding ``prefix + suffix``
  (``segments``; without segments the prefix is ``prompt``), every choice at
  ``offset = len(prefix)``. Each ``select`` of the completion is one change: versions
  1, 2, ... in ``ts`` order (file order on ties); ``view`` and ``dismiss`` carry the
  version current at their ``ts``.
- ``view`` -> ``shown`` (one per view record). A choice selected or dismissed without any
  view record gets one ``shown`` at the completion's ``ts``.
- ``select`` -> ``accepted`` of the rest of the choice not accepted yet.
  ``select`` with ``kind: "line"`` -> ``accepted`` of the *next line* of the rest
  (through its newline), at the end of what was accepted before, so successive line
  selects are the contract's continued partial accepts. Tabby's VS Code client also logs
  a *word* accept as ``kind: "line"`` ("word" is not supported by the server), so for a
  word accept ``accepted_text`` is an upper bound of what was inserted. A select after
  the whole choice was accepted is skipped (``nothing_left_to_accept``).
- ``dismiss`` -> ``rejected`` without reason (the log does not say why).
- ``completion`` records are *converted* when any of their choices is referenced, else
  skipped (``never_viewed``). Exact duplicate lines are skipped (``duplicate_record``);
  two different ``completion`` records with one ``completion_id`` refuse the later one.
  A view/select/dismiss whose completion is in none of the inputs is refused
  (``unknown_completion``): import the day's file that holds it together with it.

Reachable outcomes: ``kept``, ``rejected``, ``ignored``. Tabby logs no keystrokes after
an accept, so ``refined``, ``rewritten`` and ``deleted`` cannot be derived; ``orphan``
and ``replay_gap`` cannot arise (every accept is tied to its completion's shown and
versions are assigned without gaps).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from echo.importers.common import (
    INT64_MAX,
    Record,
    Refused,
    Tally,
    check,
    need,
    opt,
    pseudonym,
)

SOURCE = "tabby"
KINDS = ("completion", "view", "select", "dismiss", "chat_completion")


@dataclass
class _Completion:
    rec: Record
    ts: int
    user: str
    language: str
    prefix: str
    suffix: str | None
    filepath: str
    choices: dict[int, str]
    client: str | None
    used: bool = False


@dataclass
class _Action:
    rec: Record
    kind: str  # view / select / dismiss
    ts: int
    completion_id: str
    choice: int
    line_select: bool
    order: int
    digest: str  # of the record's JSON value: the event id is stable across re-imports


def convert(
    records: Iterable[Record], *, tally: Tally, model_id: str = "tabby", anonymous_user: str = "anonymous"
) -> list[dict[str, Any]]:
    """Contract events of a Tabby event log (see the module docstring)."""
    completions: dict[str, _Completion] = {}
    actions: list[_Action] = []
    seen: set[str] = set()
    for rec in records:
        tally.read += 1
        if rec.error is not None:
            tally.refuse(rec, "invalid_json", rec.error)
            continue
        key = json.dumps(rec.value, sort_keys=True)
        if key in seen:
            tally.skipped["duplicate_record"] += 1
            continue
        seen.add(key)
        try:
            kind, body, ts, entry_user = _entry(rec.value)
            if kind == "chat_completion":
                tally.skipped["chat_completion"] += 1
                continue
            cid = need(body, "completion_id", str, where=kind)
            if kind == "completion":
                comp = _completion(rec, body, ts, entry_user, anonymous_user)
                if cid in completions:
                    raise Refused("conflicting_completion", f"completion_id {cid!r} was logged before with other content")
                completions[cid] = comp
                continue
            choice = need(body, "choice_index", int, where=kind)
            if choice < 0:
                raise Refused("negative_value", f"{kind}.choice_index is negative")
            opt(body, "view_id", str, where=kind)
            select_kind = opt(body, "kind", str, where=kind) if kind == "select" else None
            if select_kind not in (None, "line"):
                raise Refused("wrong_type", f"select.kind {select_kind!r} is not 'line'")
            digest = hashlib.sha256(key.encode("utf-8")).hexdigest()[:16]
            actions.append(_Action(rec, kind, ts, cid, choice, select_kind == "line", len(actions), digest))
        except Refused as exc:
            tally.refuse(rec, exc.reason, exc.detail)
    events = _events(completions, actions, tally, model_id)
    for comp in completions.values():
        if comp.used:
            tally.converted += 1
        else:
            tally.skipped["never_viewed"] += 1
    for e in events:
        tally.events[e["event_type"]] += 1
    return events


def _entry(value: Any) -> tuple[str, dict[str, Any], int, str | None]:
    if not isinstance(value, dict):
        raise Refused("invalid_json", "not a JSON object")
    ts = need(value, "ts", int)
    if not 0 <= ts <= INT64_MAX:
        raise Refused("negative_value" if ts < 0 else "wrong_type", f"ts {ts} is out of range")
    event = need(value, "event", dict)
    if len(event) != 1:
        raise Refused("wrong_type", "event must hold exactly one kind")
    (kind, body), = event.items()
    if kind not in KINDS:
        raise Refused("unknown_event", f"event kind {kind!r} is not one of {', '.join(KINDS)}")
    check(body, f"event.{kind}", dict)
    return kind, body, ts, opt(value, "user", str)


def _completion(rec: Record, body: dict[str, Any], ts: int, entry_user: str | None, anonymous: str) -> _Completion:
    language = need(body, "language", str, where="completion")
    prompt = need(body, "prompt", str, where="completion")
    segments = opt(body, "segments", dict, where="completion")
    prefix, suffix, filepath = prompt, None, ""
    if segments is not None:
        prefix = need(segments, "prefix", str, where="segments")
        suffix = opt(segments, "suffix", str, where="segments")
        filepath = opt(segments, "filepath", str, where="segments") or ""
    choices: dict[int, str] = {}
    for i, c in enumerate(need(body, "choices", list, where="completion")):
        check(c, f"choices[{i}]", dict)
        index = need(c, "index", int, where=f"choices[{i}]")
        choices[index] = need(c, "text", str, where=f"choices[{i}]")
    raw_user = entry_user or opt(body, "user", str, where="completion") or anonymous
    return _Completion(
        rec, ts, pseudonym(SOURCE, raw_user), language, prefix, suffix, filepath, choices,
        opt(body, "user_agent", str, where="completion"),
    )  # fmt: skip


def _next_line(rest: str) -> str:
    cut = rest.find("\n")
    return rest if cut < 0 else rest[: cut + 1]


def _events(
    completions: dict[str, _Completion], actions: list[_Action], tally: Tally, model_id: str
) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    viewed: set[tuple[str, int]] = set()
    ok: list[_Action] = []
    for act in actions:
        comp = completions.get(act.completion_id)
        if comp is None:
            tally.refuse(act.rec, "unknown_completion", f"no completion record with id {act.completion_id!r} in the inputs")
        elif act.choice not in comp.choices:
            tally.refuse(act.rec, "unknown_choice", f"completion {act.completion_id!r} has no choice {act.choice}")
        else:
            ok.append(act)
            if act.kind == "view":
                viewed.add((act.completion_id, act.choice))
    ok.sort(key=lambda a: (a.completion_id, a.ts, a.order))
    version: dict[str, int] = {}
    consumed: dict[tuple[str, int], int] = {}
    synthesized: set[tuple[str, int]] = set()
    for act in ok:
        comp = completions[act.completion_id]
        comp.used = True
        cid, key = act.completion_id, (act.completion_id, act.choice)
        sid = f"{SOURCE}:{cid}:{act.choice}"
        base: dict[str, Any] = {
            "user_id": comp.user,
            "doc_id": f"{SOURCE}:{comp.user}:{comp.filepath}#{cid}",
            "language": comp.language,
            "client": comp.client or "tabby",
            "suggestion_id": sid,
        }
        text = comp.choices[act.choice]
        if key not in viewed and key not in synthesized:
            synthesized.add(key)
            events.append(_shown(base, comp, text, f"{sid}:shown", comp.ts, 0, model_id))
        rid = f"{sid}:{act.kind}:{act.digest}"
        current = version.get(cid, 0)
        if act.kind == "view":
            events.append(_shown(base, comp, text, rid, act.ts, current, model_id))
        elif act.kind == "dismiss":
            events.append({**base, "event_id": rid, "event_type": "rejected", "ts_ms": act.ts, "doc_version": current})
        else:
            done = consumed.get(key, 0)
            rest = text[done:]
            if not rest:
                tally.skipped["nothing_left_to_accept"] += 1
                continue
            part = _next_line(rest) if act.line_select else rest
            version[cid] = current + 1
            consumed[key] = done + len(part)
            events.append({
                **base, "event_id": rid, "event_type": "accepted", "ts_ms": act.ts,
                "doc_version": current + 1, "offset": len(comp.prefix) + done, "accepted_text": part,
            })  # fmt: skip
        tally.converted += 1
    return events


def _shown(
    base: dict[str, Any], comp: _Completion, text: str, event_id: str, ts: int, version: int, model_id: str
) -> dict[str, Any]:
    shown = {
        **base, "event_id": event_id, "event_type": "shown", "ts_ms": ts, "doc_version": version,
        "model_id": model_id, "offset": len(comp.prefix), "text": text, "prefix": comp.prefix,
    }  # fmt: skip
    if comp.suffix is not None:
        shown["suffix"] = comp.suffix
    return shown
