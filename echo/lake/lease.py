"""One writer per lake: a lease held in a Delta table, and the lake's invariants.

Delta's optimistic concurrency makes each *table* commit atomic, but a pipeline run is a
read-classify-append over several tables plus its own state (run numbers, watermarks).
Two runs on one lake at once (a retried job overlapping the original) would both read
"not seen yet" and both append. So every command that writes a lake first takes the
lake's lease, and gives it back when it ends.

The lease is one row of the Delta table ``_echo/lease`` (:data:`~echo.lake.tables.LAKE_LEASE`):

- **Creation fixes the invariants.** The table is created with its row in version 0,
  a put-if-absent commit: of two runs creating a lake at once, one creates it and the
  other reads it. ``buckets`` and ``format_version`` never change afterwards; a run that
  asks for other values is refused in one line (:func:`check_invariants`).
- **Taking it is a compare-and-swap.** Read the row; if another holder's lease is live,
  the lake is busy. Otherwise a MERGE updates the row *only if* it still names the
  holder and state that were read. Two runs racing for it both read the same snapshot;
  Delta lets only one of the two MERGEs commit (the other fails with a concurrent-delete
  conflict, or its condition no longer matches), and the loser reads the winner.
- **A lease ends** when its holder releases it, when its ``expires_ms`` passes (the
  holder renews it from a heartbeat thread every ``ttl/4``), or at once when its holder
  ran on this host and its process is gone (a run killed with SIGKILL).
- **Writes check it.** Before every commit the lake checks that its lease was not lost
  (a heartbeat that found another holder); a lost lease fails the run in one line.

What this guarantees rests on the store's put-if-absent for Delta log entries: local
disks and ADLS Gen2 have it natively, S3 has it through conditional writes (delta-rs:
``conditional_put``) or a DynamoDB log store (delta-spark: ``S3DynamoDBLogStore``);
without either, concurrent writers on S3 are unsafe for Delta itself (docs/deploy.md).
"""

from __future__ import annotations

import contextlib
import datetime
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from echo.errors import LakeError

if TYPE_CHECKING:
    from echo.lake.base import Lake

#: Layout version of a lake this code writes (recorded at creation, checked on open).
FORMAT_VERSION = 5
#: What changed in each version (named in the refusal of an older lake).
FORMAT_CHANGES = {
    3: "silver/sessions partitioned by start_date, silver/suggestions and gold/refinement_pairs "
    "by shown day, incremental state in _echo/session_changes, _echo/doc_days and "
    "_echo/suggestion_changes",
    4: "typed-instead and retention-at-horizon columns in silver/suggestions and "
    "gold/acceptance_metrics, and gold/typed_pairs",
    5: "track's bounded replay: version ranges and first languages in _echo/doc_days, "
    "per-suggestion dependencies in _echo/track_state, changed sessions in _echo/session_changes",
}
#: Buckets of a new lake when the command does not say.
DEFAULT_BUCKETS = 16
#: Seconds a lease lives without renewal.
DEFAULT_TTL_S = 120.0


class LakeBusy(LakeError):
    """Another run holds the lake."""


class LeaseConflict(Exception):
    """A lease commit lost a race (Delta refused it as conflicting)."""


class LeaseStore(Protocol):
    """Storage of the lease row; implemented per backend."""

    def read(self) -> dict[str, Any] | None: ...

    def create(self, row: dict[str, Any]) -> bool:
        """Create the table holding ``row`` in version 0; False when it already exists."""
        ...

    def swap(self, expected_holder: str, expected_state: str, row: dict[str, Any]) -> None:
        """Replace the row if it still has ``expected_holder`` and ``expected_state``, in one
        commit; raise :class:`LeaseConflict` when a concurrent commit wins."""
        ...


def _now_ms() -> int:
    return int(time.time() * 1000)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def describe(row: dict[str, Any]) -> str:
    since = datetime.datetime.fromtimestamp((row.get("acquired_ms") or 0) / 1000, datetime.timezone.utc)
    return (
        f"'{row.get('command') or '?'}' (holder {row.get('holder')}, host {row.get('host')}, "
        f"pid {row.get('pid')}, since {since:%Y-%m-%d %H:%M:%S} UTC)"
    )


#: Holder ids of the leases this process holds right now (a lease of this process that is
#: not in here was left by a command that ended without giving it back).
_HELD: set[str] = set()


def is_live(row: dict[str, Any], *, now_ms: int, host: str) -> bool:
    """Whether ``row`` is a lease someone still holds."""
    if row.get("state") != "held":
        return False
    if int(row.get("expires_ms") or 0) < now_ms:
        return False
    pid = row.get("pid")
    if row.get("host") != host or pid is None:
        return True
    if int(pid) == os.getpid():
        return row.get("holder") in _HELD
    return _pid_alive(int(pid))


def check_invariants(row: dict[str, Any], root: str, *, buckets: int) -> None:
    """Refuse a run whose settings disagree with what the lake was created with."""
    fmt = int(row["format_version"])
    if fmt > FORMAT_VERSION:
        raise LakeError(
            f"lake {root} has format version {fmt}; this Echo writes version {FORMAT_VERSION} (upgrade Echo)"
        )
    if fmt < FORMAT_VERSION:
        raise LakeError(
            f"lake {root} has format version {fmt}; this Echo needs version {FORMAT_VERSION} "
            f"({FORMAT_CHANGES[FORMAT_VERSION]}): re-create it by running 'run' over the lake's "
            "input files into a new lake"
        )
    if buckets and buckets != int(row["buckets"]):
        raise LakeError(
            f"lake {root} was created with --buckets {row['buckets']}; this run asks for {buckets} "
            "(a lake's buckets never change: drop --buckets or pass the lake's value)"
        )


@dataclass
class Lease:
    """The lease of one lake, held by this process while a command writes it."""

    store: LeaseStore
    root: str
    command: str
    ttl_s: float = DEFAULT_TTL_S
    holder: str = ""
    held: bool = False
    lost: str | None = None
    _stop: threading.Event | None = None
    _thread: threading.Thread | None = None

    def __post_init__(self) -> None:
        self.holder = self.holder or uuid.uuid4().hex
        self.host = socket.gethostname()

    def _row(self, current: dict[str, Any], state: str) -> dict[str, Any]:
        now = _now_ms()
        return {
            **current,
            "state": state,
            "holder": self.holder,
            "command": self.command,
            "host": self.host,
            "pid": os.getpid(),
            "acquired_ms": now if state == "held" and current.get("holder") != self.holder else current.get("acquired_ms"),
            "expires_ms": now + int(self.ttl_s * 1000),
        }

    def ensure(self, *, buckets: int) -> dict[str, Any]:
        """The lease row, creating the table (with the lake's invariants) on a new lake."""
        row = self.store.read()
        if row is None:
            initial = {
                "slot": 0,
                "buckets": buckets or DEFAULT_BUCKETS,
                "format_version": FORMAT_VERSION,
                "state": "released",
                "holder": "",
                "command": None,
                "host": None,
                "pid": None,
                "acquired_ms": None,
                "expires_ms": 0,
            }
            self.store.create(initial)  # put-if-absent: a concurrent creator may win
            row = self.store.read()
            if row is None:
                raise LakeError(f"lake {self.root}: could not create its lease table")
        return row

    def acquire(self, *, buckets: int, wait_s: float = 0.0, poll_s: float = 1.0) -> dict[str, Any]:
        """Take the lease (waiting up to ``wait_s`` for a live holder); returns the row,
        whose ``buckets`` and ``format_version`` are the lake's invariants."""
        deadline = time.monotonic() + wait_s
        while True:
            row = self.ensure(buckets=buckets)
            check_invariants(row, self.root, buckets=buckets)
            if not is_live(row, now_ms=_now_ms(), host=self.host) or row["holder"] == self.holder:
                # Registered before the swap: from the moment the row can name this holder,
                # another thread of this process must read it as live, not as a lease left
                # by an ended command (which it would take over).
                _HELD.add(self.holder)
                try:
                    self.store.swap(row["holder"], row["state"], self._row(row, "held"))
                except LeaseConflict:
                    pass  # another run committed first: read again
                else:
                    mine = self.store.read()
                    if mine is not None and mine["holder"] == self.holder and mine["state"] == "held":
                        self.held = True
                        self._start_heartbeat()
                        return mine
                _HELD.discard(self.holder)
                continue
            if time.monotonic() >= deadline:
                raise LakeBusy(
                    f"lake {self.root} is held by {describe(row)}; wait for it to finish "
                    "(or pass --wait-s), then run again"
                )
            time.sleep(poll_s)

    def renew(self) -> None:
        """Push this run's expiry forward; a lease that now names another holder is lost."""
        row = self.store.read()
        if row is not None and row["holder"] == self.holder and row["state"] == "held":
            try:
                self.store.swap(self.holder, "held", self._row(row, "held"))
                self._renewed_ms = _now_ms()
                return
            except LeaseConflict:
                row = self.store.read()  # someone committed meanwhile: is it still ours?
                if row is not None and row["holder"] == self.holder:
                    return
        self.lost = f"lake {self.root}: this run's lease was taken over by {describe(row or {})}"

    def check(self) -> None:
        """Raise if the lease was lost (called before every commit)."""
        if self.lost:
            raise LakeError(self.lost)

    def release(self) -> None:
        """Give the lease back. Never raises: a run that failed (a full disk, a lost store)
        must end with its own error, and a lease it could not give back ends anyway, when
        its process is gone or its TTL passes."""
        self._stop_heartbeat()
        if not self.held:
            return
        self.held = False
        _HELD.discard(self.holder)
        try:
            row = self.store.read()
            if row is not None and row["holder"] == self.holder and row["state"] == "held":
                with contextlib.suppress(LeaseConflict):  # taken over meanwhile: nothing to give back
                    self.store.swap(self.holder, "held", {**row, "state": "released", "expires_ms": 0})
        except Exception as exc:
            import logging

            logging.getLogger("echo.lake").warning("could not release the lease of %s: %s", self.root, exc)

    # -- heartbeat -----------------------------------------------------------------------
    def _start_heartbeat(self) -> None:
        self._stop = threading.Event()
        stop = self._stop

        def beat() -> None:
            while not stop.wait(self.ttl_s / 4):
                try:
                    self.renew()
                except Exception as exc:  # a storage hiccup: the next beat retries
                    if not stop.is_set() and _now_ms() > self._expiry_guess():
                        self.lost = f"lake {self.root}: could not renew this run's lease ({exc})"

        self._renewed_ms = _now_ms()
        self._thread = threading.Thread(target=beat, name="echo-lake-lease", daemon=True)
        self._thread.start()

    def _expiry_guess(self) -> int:
        return self._renewed_ms + int(self.ttl_s * 1000)

    def _stop_heartbeat(self) -> None:
        if self._stop is not None:
            self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        self._stop = self._thread = None


class DeltaRsLeaseStore:
    """The lease table at a path, through delta-rs (any backend on a path lake)."""

    def __init__(self, lake: Lake, storage_options: dict[str, str] | None = None) -> None:
        from echo.lake.tables import LAKE_LEASE

        self.uri = lake.path(LAKE_LEASE)
        self.table = LAKE_LEASE
        self.options = storage_options

    def _schema(self) -> Any:
        from echo.lake.arrow import arrow_schema

        return arrow_schema(self.table)

    def _check_writable(self) -> None:
        """A local lake that cannot be written (read-only, full) is refused in one line
        before delta-rs tries: its failed writes panic in a background thread, which
        prints a Rust backtrace on stderr."""
        from echo.lake.guard import probe_local

        cause = probe_local(self.uri)
        if cause is not None:
            raise LakeError(f"cannot write the lake's lease {self.uri}: {cause}; no table was changed")

    def read(self) -> dict[str, Any] | None:
        from deltalake import DeltaTable
        from deltalake.exceptions import TableNotFoundError

        try:
            rows = DeltaTable(self.uri, storage_options=self.options).to_pyarrow_table().to_pylist()
        except TableNotFoundError:
            return None
        return rows[0] if rows else None

    def create(self, row: dict[str, Any]) -> bool:
        import pyarrow as pa
        from deltalake import write_deltalake

        from echo.lake.guard import storage_cause

        self._check_writable()
        try:
            write_deltalake(
                self.uri, pa.Table.from_pylist([row], schema=self._schema()), mode="error",
                name="_echo_lease", storage_options=self.options,
            )  # fmt: skip
        except Exception as exc:  # exists already (a concurrent creator won): fine
            if self.read() is None:
                cause = storage_cause(exc) or str(exc).splitlines()[0]
                raise LakeError(f"cannot create the lake's lease {self.uri}: {cause}") from None
            return False
        return True

    def swap(self, expected_holder: str, expected_state: str, row: dict[str, Any]) -> None:
        import pyarrow as pa
        from deltalake import DeltaTable
        from deltalake.exceptions import CommitFailedError

        dt = DeltaTable(self.uri, storage_options=self.options)
        src = pa.Table.from_pylist([row], schema=self._schema())
        cond = f"t.holder = {_sql(expected_holder)} AND t.state = {_sql(expected_state)}"
        from echo.lake.guard import writing

        self._check_writable()
        try:
            with writing("_echo/lease", self.uri.rsplit("/_echo/", 1)[0]):
                (
                    dt.merge(src, predicate="t.slot = s.slot", source_alias="s", target_alias="t")
                    .when_matched_update_all(predicate=cond)
                    .execute()
                )
        except CommitFailedError as exc:
            raise LeaseConflict(str(exc)) from None


def _sql(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def hold(lake: Lake, command: str, *, buckets: int, wait_s: float = 0.0,
         ttl_s: float = DEFAULT_TTL_S, store_factory: Callable[[Lake], LeaseStore] | None = None) -> Lease:  # fmt: skip
    """Take ``lake``'s lease for ``command``; sets ``lake.buckets`` and ``lake.lease``."""
    store = (store_factory or (lambda lk: lk.lease_store()))(lake)
    lease = Lease(store, lake.root, command, ttl_s=ttl_s)
    row = lease.acquire(buckets=buckets, wait_s=wait_s)
    lake.buckets = int(row["buckets"])
    lake.lease = lease
    return lease
