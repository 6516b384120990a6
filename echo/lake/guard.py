"""Storage failures as one-line errors, and the commit boundaries of the backends.

A full disk, a read-only mount, a quota or a permission change in the middle of a run
surfaces from deep inside Spark (a Java stack trace), pyarrow or delta-rs. Every write
of both backends runs inside :func:`writing` (data files) or :func:`committing` (the
Delta commit), which turn such failures into a :class:`~echo.errors.LakeError` naming
the table and the cause. A failed write commits nothing, so every table stays at its
last committed version; the job ends there and the next run redoes what is missing.
"""

from __future__ import annotations

import errno
from collections.abc import Iterator
from contextlib import contextmanager

from echo.errors import LakeError
from echo.lake.faults import commit_point

#: errno -> the message the storage gives for it (what Java and Rust print as well)
_CAUSES: dict[int, str] = {
    errno.ENOSPC: "No space left on device",
    errno.EROFS: "Read-only file system",
    errno.EDQUOT: "Disk quota exceeded",
    errno.EACCES: "Permission denied",
    errno.ENOTDIR: "Not a directory",
}


def storage_cause(exc: BaseException) -> str | None:
    """The storage failure behind ``exc`` (one of :data:`_CAUSES`), or None."""
    if isinstance(exc, OSError) and exc.errno in _CAUSES:
        return _CAUSES[exc.errno]
    text = str(exc)
    for cause in _CAUSES.values():
        if cause.lower() in text.lower():
            return cause
    return None


@contextmanager
def writing(table: str, root: str) -> Iterator[None]:
    """Data files of ``table`` being written (nothing committed yet)."""
    try:
        yield
    except LakeError:
        raise
    except Exception as exc:
        cause = storage_cause(exc)
        if cause is None:
            raise
        raise LakeError(
            f"cannot write {table} under {root}: {cause}; nothing was committed to it, "
            "every table stays at its last committed version"
        ) from None


@contextmanager
def committing(table: str, root: str, op: str) -> Iterator[None]:
    """One Delta commit of ``table`` (``op``: create, append, overwrite, merge, delete,
    vacuum): the fault-injection points of :mod:`echo.lake.faults` around it, and
    storage failures as one line."""
    commit_point("before", table, op)
    with writing(table, root):
        yield
    commit_point("after", table, op)
