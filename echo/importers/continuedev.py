"""Continue (continuedev/continue) ``dev_data`` logs -> contract events.

Continue appends one JSON object per line to ``~/.continue/dev_data/0.2.0/<eventName>.jsonl``
(``core/data/log.ts``), validated against the zod schemas in
``packages/config-yaml/src/schemas/data/``. Two event names carry completion outcomes:

``autocomplete`` (schema 0.2.0: ``autocomplete/index.ts`` + ``base``)
    One record per *displayed* inline completion, written once its fate is known
    (``core/autocomplete/util/AutocompleteLoggingService.ts``): ``accepted: true`` when the
    user took it, ``accepted: false`` when it was not taken within 10 s
    (``COUNT_COMPLETION_REJECTED_AFTER``). A completion superseded by a continuation of it
    is never logged. Fields used: ``completionId``, ``completion``, ``prefix``, ``suffix``,
    ``filepath``, ``timestamp`` (ms number, or ISO-8601 string in older builds: the time
    the completion was produced), ``time`` (ms from request to completion), ``modelProvider``,
    ``modelName``, ``accepted`` (optional), ``userId`` / ``uniqueId``, ``userAgent``.

``nextEditOutcome`` (``nextEditOutcome/index.ts``)
    One record per displayed next-edit proposal (``core/nextEdit/NextEditLoggingService.ts``):
    the model rewrites ``originalEditableRange`` into ``completion``. ``accepted: true``
    (taken), ``accepted: false`` (rejected by the user or after 10 s), ``aborted: true``
    (displayed, then cancelled by the next request). Fields used: ``completionId``,
    ``completion``, ``originalEditableRange``, ``prompt``, ``fileUri``, ``timestamp``,
    ``elapsed``, ``modelProvider``, ``modelName``, ``accepted``, ``aborted``, ``userId`` /
    ``uniqueId``, ``userAgent``.

Records of any other ``eventName`` (chat, tool usage, tokens generated, ...) are skipped
and counted as ``other_event:<name>``. A record without ``eventName`` takes it from its
file name (``autocomplete.jsonl``). A record whose ``schema``/``schemaVersion`` is present
and not ``0.2.x`` is refused (``unsupported_schema``).

Mapping (docs/importers.md has the full table):

- ``user_id``: ``"continue:" + sha256(userId)[:16]``; Continue writes ``userId = ""`` when
  nobody is signed in, then the machine's ``uniqueId`` is used instead. Raw ids (an auth
  token's value, a machine id) never reach the lake.
- ``suggestion_id``: ``"continue:" + completionId`` (next edits: ``"continue-ne:" + ...``).
- Documents: Continue logs neither the file's content nor the cursor offset (``prefix``
  is the pruned window the model saw), so positions of two completions in one file cannot
  be related. Each completion gets its own document
  ``"continue:<user>:<filepath>#<completionId>"`` holding ``prefix + suffix``; the proposal
  sits at ``offset = len(prefix)``. Versions: ``shown`` 0, ``accepted`` 1.
- ``ts_ms``: ``timestamp`` for ``shown`` and ``accepted`` (the accept time is not
  logged); a rejection is logged 10 s after display, so ``rejected`` gets ``timestamp +
  10000`` with ``reason = "timeout"``.
- ``model_id``: ``"<modelProvider>/<modelName>"``; ``language`` from the file extension;
  ``client``: ``userAgent``; ``latency_ms``: ``time`` (autocomplete), ``elapsed`` (next edit).
- Next edit accepted: ``accepted`` of ``completion`` at offset 0 (version 1), then an
  ``edit`` deleting ``originalEditableRange`` right after it (version 2), so the document
  ends as the client left it. ``prefix`` is the model's ``prompt`` (there is no FIM
  prefix). ``aborted`` -> ``rejected`` with ``reason = "other"``; ``accepted: false`` ->
  ``rejected`` without reason (an explicit reject and the 10 s timeout look the same).
- ``accepted`` missing -> only ``shown`` (outcome ``ignored``).

Reachable outcomes: ``kept``, ``rejected``, ``ignored``. Continue does not log the user's
keystrokes after an accept, so ``refined``, ``rewritten`` and ``deleted`` cannot be
derived, and ``replay_gap``/``orphan`` cannot arise (each record carries its own shown).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import PurePath
from typing import Any

from echo.importers.common import (
    Record,
    Refused,
    Tally,
    check,
    language_of,
    need,
    opt,
    parse_ts_ms,
    pseudonym,
)

SOURCE = "continue"
#: Continue logs a rejection this long after display (core/util/parameters.ts).
REJECTED_AFTER_MS = 10_000


def convert(records: Iterable[Record], *, tally: Tally) -> list[dict[str, Any]]:
    """Contract events of a Continue ``dev_data`` log (see the module docstring)."""
    events: list[dict[str, Any]] = []
    for rec in records:
        tally.read += 1
        if rec.error is not None:
            tally.refuse(rec, "invalid_json", rec.error)
            continue
        if not isinstance(rec.value, dict):
            tally.refuse(rec, "invalid_json", "not a JSON object")
            continue
        obj: dict[str, Any] = rec.value
        name = obj.get("eventName")
        if name is None:
            name = PurePath(rec.source).name.split(".")[0]
        try:
            check(name, "eventName", str)
            if name not in ("autocomplete", "nextEditOutcome"):
                tally.skipped[f"other_event:{name}"] += 1
                continue
            schema = obj.get("schema", obj.get("schemaVersion"))
            if schema is not None and not (isinstance(schema, str) and schema.startswith("0.2.")):
                raise Refused("unsupported_schema", f"schema {schema!r} (the importer reads 0.2.x)")
            new = _autocomplete(obj) if name == "autocomplete" else _next_edit(obj)
        except Refused as exc:
            tally.refuse(rec, exc.reason, exc.detail)
            continue
        tally.converted += 1
        for e in new:
            tally.events[e["event_type"]] += 1
        events += new
    return events


def _user(obj: dict[str, Any]) -> str:
    user = opt(obj, "userId", str)
    if not user:
        user = opt(obj, "uniqueId", str)
    if not user:
        raise Refused("missing_field", "userId and uniqueId are both missing or empty")
    return pseudonym(SOURCE, user)


def _base(obj: dict[str, Any], *, user: str, doc_id: str, language: str | None) -> dict[str, Any]:
    base: dict[str, Any] = {"user_id": user, "doc_id": doc_id}
    if language:
        base["language"] = language
    agent = opt(obj, "userAgent", str)
    if agent:
        base["client"] = agent
    return base


def _latency(obj: dict[str, Any], name: str) -> int | None:
    value = opt(obj, name, (int, float))
    return int(value) if value is not None and value >= 0 else None


def _autocomplete(obj: dict[str, Any]) -> list[dict[str, Any]]:
    cid = need(obj, "completionId", str)
    completion = need(obj, "completion", str)
    prefix = need(obj, "prefix", str)
    suffix = opt(obj, "suffix", str)
    filepath = need(obj, "filepath", str)
    ts = parse_ts_ms(need(obj, "timestamp", (int, float, str)), "timestamp")
    model = f"{need(obj, 'modelProvider', str)}/{need(obj, 'modelName', str)}"
    accepted = opt(obj, "accepted", bool)
    user = _user(obj)
    base = _base(obj, user=user, doc_id=f"{SOURCE}:{user}:{filepath}#{cid}", language=language_of(filepath))
    sid = f"{SOURCE}:{cid}"
    shown: dict[str, Any] = {
        **base, "event_id": f"{sid}:shown", "event_type": "shown", "ts_ms": ts, "doc_version": 0,
        "suggestion_id": sid, "model_id": model, "offset": len(prefix), "text": completion,
        "prefix": prefix,
    }  # fmt: skip
    if suffix is not None:
        shown["suffix"] = suffix
    latency = _latency(obj, "time")
    if latency is not None:
        shown["latency_ms"] = latency
    out = [shown]
    if accepted is True:
        out.append({
            **base, "event_id": f"{sid}:accepted", "event_type": "accepted", "ts_ms": ts,
            "doc_version": 1, "suggestion_id": sid, "offset": len(prefix), "accepted_text": completion,
        })  # fmt: skip
    elif accepted is False:
        out.append({
            **base, "event_id": f"{sid}:rejected", "event_type": "rejected",
            "ts_ms": ts + REJECTED_AFTER_MS, "doc_version": 0, "suggestion_id": sid, "reason": "timeout",
        })  # fmt: skip
    return out


def _next_edit(obj: dict[str, Any]) -> list[dict[str, Any]]:
    cid = need(obj, "completionId", str)
    completion = need(obj, "completion", str)
    original = need(obj, "originalEditableRange", str)
    prompt = need(obj, "prompt", str)
    file_uri = need(obj, "fileUri", str)
    ts = parse_ts_ms(need(obj, "timestamp", (int, float, str)), "timestamp")
    model = f"{need(obj, 'modelProvider', str)}/{need(obj, 'modelName', str)}"
    accepted = opt(obj, "accepted", bool)
    aborted = opt(obj, "aborted", bool)
    user = _user(obj)
    base = _base(obj, user=user, doc_id=f"{SOURCE}:{user}:{file_uri}#ne:{cid}", language=language_of(file_uri))
    sid = f"{SOURCE}-ne:{cid}"
    shown: dict[str, Any] = {
        **base, "event_id": f"{sid}:shown", "event_type": "shown", "ts_ms": ts, "doc_version": 0,
        "suggestion_id": sid, "model_id": model, "offset": 0, "text": completion, "prefix": prompt,
    }  # fmt: skip
    latency = _latency(obj, "elapsed")
    if latency is not None:
        shown["latency_ms"] = latency
    out = [shown]
    if accepted is True and not aborted:
        out.append({
            **base, "event_id": f"{sid}:accepted", "event_type": "accepted", "ts_ms": ts,
            "doc_version": 1, "suggestion_id": sid, "offset": 0, "accepted_text": completion,
        })  # fmt: skip
        if original:
            out.append({
                **base, "event_id": f"{sid}:replaced", "event_type": "edit", "ts_ms": ts,
                "doc_version": 2, "offset": len(completion), "delete_len": len(original), "insert_text": "",
            })  # fmt: skip
    elif aborted:
        out.append({
            **base, "event_id": f"{sid}:rejected", "event_type": "rejected", "ts_ms": ts,
            "doc_version": 0, "suggestion_id": sid, "reason": "other",
        })  # fmt: skip
    elif accepted is False:
        out.append({
            **base, "event_id": f"{sid}:rejected", "event_type": "rejected", "ts_ms": ts,
            "doc_version": 0, "suggestion_id": sid,
        })  # fmt: skip
    return out
