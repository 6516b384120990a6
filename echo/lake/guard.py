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
import os
import tempfile
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


def probe_local(location: str) -> str | None:
    """Write (and remove) a small file in the nearest existing folder of a local
    ``location``: the storage failure that stops it, if any. Only called after a write
    failed for a reason the error does not name (Hadoop's local file system reports a
    read-only folder as "Mkdirs failed to create ...")."""
    path = location[len("file://") :] if location.startswith("file://") else location
    if "://" in path:
        return None  # object stores name their errors (access denied, quota)
    folder = os.path.abspath(path)
    while not os.path.isdir(folder) and os.path.dirname(folder) != folder:
        folder = os.path.dirname(folder)
    try:
        with tempfile.TemporaryFile(dir=folder, prefix="_echo-probe-") as fh:
            fh.write(b"\0" * 65536)
            fh.flush()
            os.fsync(fh.fileno())
    except OSError as exc:
        return storage_cause(exc)
    return None


@contextmanager
def writing(table: str, root: str) -> Iterator[None]:
    """Data files of ``table`` (under the lake ``root``) being written, not committed."""
    try:
        yield
    except LakeError:
        raise
    except Exception as exc:
        cause = storage_cause(exc) or probe_local(f"{root.rstrip('/')}/{table}")
        if cause is None:
            raise
        raise LakeError(
            f"cannot write {table} under {root}: {cause}; nothing was committed to it, "
            "every table stays at its last committed version"
        ) from None


@contextmanager
def committing(table: str, root: str, op: str) -> Iterator[None]:
    """One Delta commit of ``table`` (``op``: create, set properties, append, overwrite,
    merge, delete, vacuum): the fault-injection points of :mod:`echo.lake.faults` around it, and
    storage failures as one line."""
    commit_point("before", table, op)
    with writing(table, root):
        yield
    commit_point("after", table, op)
