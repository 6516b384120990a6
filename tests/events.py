"""The tests' one builder of contract events (CONTRACT.md section 1).

:func:`event` makes one event of any type from the common fields and the type's own
(a field given as ``...`` is left out, to test a missing field); :class:`Ev` writes the
events of one user's document in order, numbering the ids and the document versions.
"""

from __future__ import annotations

from typing import Any

from echo.contract import ACCEPTED, EDIT, REJECTED, SHOWN

T0 = 1_700_000_000_000  # an epoch millisecond in 2023


def event(
    event_type: str,
    event_id: str = "e1",
    ts_ms: Any = T0,
    doc_version: Any = 0,
    *,
    user_id: Any = "u1",
    doc_id: Any = "d1",
    **fields: Any,
) -> dict[str, Any]:
    """One event: the common fields, then ``fields`` (``...`` drops a field)."""
    e = {"event_id": event_id, "event_type": event_type, "ts_ms": ts_ms, "user_id": user_id,
         "doc_id": doc_id, "doc_version": doc_version, **fields}  # fmt: skip
    return {k: v for k, v in e.items() if v is not ...}


class Ev:
    """The events of one user's document, in order: ids ``user-doc-00001``..., the
    document version raised by every accept and edit, ``ts_ms`` the start unless given."""

    def __init__(self, user: str = "u1", doc: str = "d1", t0: int = T0) -> None:
        self.user, self.doc, self.t = user, doc, t0
        self.version = 0
        self.n = 0

    def _next(self, etype: str, ts: int | None, **fields: Any) -> dict[str, Any]:
        self.n += 1
        return event(
            etype, f"{self.user}-{self.doc}-{self.n:05d}", self.t if ts is None else ts, self.version,
            user_id=self.user, doc_id=f"{self.user}:{self.doc}", language="python", **fields,
        )  # fmt: skip

    def shown(self, sid: str, text: str, offset: int = 0, ts: int | None = None, model: str = "m1") -> dict[str, Any]:
        return self._next(SHOWN, ts, suggestion_id=sid, model_id=model, offset=offset, text=text,
                          prefix="def f():\n", suffix="")  # fmt: skip

    def accepted(self, sid: str, text: str, offset: int = 0, ts: int | None = None) -> dict[str, Any]:
        self.version += 1
        return self._next(ACCEPTED, ts, suggestion_id=sid, offset=offset, accepted_text=text)

    def rejected(self, sid: str, ts: int | None = None) -> dict[str, Any]:
        return self._next(REJECTED, ts, suggestion_id=sid, reason="escape")

    def edit(self, offset: int, delete_len: int, insert_text: str, ts: int | None = None) -> dict[str, Any]:
        self.version += 1
        return self._next(EDIT, ts, offset=offset, delete_len=delete_len, insert_text=insert_text)
