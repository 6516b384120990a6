"""What the importers share: reading client logs, accounting, ids, writing contract events.

Every non-blank line of every input file is one *record* and ends in exactly one of three
buckets, so that ``read == converted + skipped + refused`` always holds:

- **converted**: the record produced contract events (or supplied the text of events
  produced from other records, like a Tabby ``completion`` whose choice was viewed);
- **skipped**: a well-formed record that carries no completion outcome (a chat event, a
  completion nobody saw, an exact duplicate line), counted by reason;
- **refused**: a malformed record (not JSON, a required field missing or of the wrong
  type, ...). Each one is written to ``refused.jsonl`` with its file, line, reason and
  raw text, like the pipeline's own quarantine.
"""

from __future__ import annotations

import hashlib
import json
import os
import posixpath
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from echo.errors import InputError

#: File name endings read from a directory given as SRC (Continue writes ``*.jsonl``,
#: Tabby's event log ``events/YYYY-MM-DD.json``; both are JSON Lines).
LOG_SUFFIXES = (".jsonl", ".json")

INT64_MAX = 2**63 - 1

#: Language ids by file extension (Continue logs the path, not the language).
LANGUAGES = {
    ".py": "python", ".pyi": "python", ".js": "javascript", ".jsx": "javascriptreact",
    ".mjs": "javascript", ".cjs": "javascript", ".ts": "typescript", ".tsx": "typescriptreact",
    ".java": "java", ".kt": "kotlin", ".go": "go", ".rs": "rust", ".rb": "ruby",
    ".php": "php", ".c": "c", ".h": "c", ".cc": "cpp", ".cpp": "cpp", ".hpp": "cpp",
    ".cs": "csharp", ".swift": "swift", ".scala": "scala", ".sh": "shellscript",
    ".sql": "sql", ".lua": "lua", ".r": "r", ".md": "markdown", ".json": "json",
    ".yaml": "yaml", ".yml": "yaml", ".html": "html", ".css": "css", ".dart": "dart",
}  # fmt: skip


@dataclass(frozen=True)
class Record:
    """One line of a client log: where it came from, its text and its parsed JSON value."""

    source: str
    line: int
    raw: str
    value: Any  # the parsed JSON value; None when ``error`` is set
    error: str | None = None  # why the line is not JSON (invalid UTF-8, syntax)


class Refused(Exception):
    """A record that cannot be converted: ``reason`` is a short code, ``detail`` says why."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass
class Tally:
    """The importer's counts. ``read == converted + sum(skipped) + sum(refused)``."""

    read: int = 0
    converted: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    refused: Counter[str] = field(default_factory=Counter)
    events: Counter[str] = field(default_factory=Counter)
    refused_rows: list[dict[str, Any]] = field(default_factory=list)

    def refuse(self, rec: Record, reason: str, detail: str) -> None:
        self.refused[reason] += 1
        self.refused_rows.append(
            {"source": rec.source, "line": rec.line, "reason": reason, "detail": detail, "raw": rec.raw}
        )

    def balanced(self) -> bool:
        return self.read == self.converted + sum(self.skipped.values()) + sum(self.refused.values())

    def report(self) -> dict[str, Any]:
        return {
            "read": self.read,
            "converted": self.converted,
            "skipped": sum(self.skipped.values()),
            "refused": sum(self.refused.values()),
            "skipped_by_reason": dict(sorted(self.skipped.items())),
            "refused_by_reason": dict(sorted(self.refused.items())),
            "events": sum(self.events.values()),
            "events_by_type": dict(sorted(self.events.items())),
        }


def list_logs(paths: Sequence[str]) -> list[Path]:
    """The files to read: each SRC file as given, each SRC directory's ``*.jsonl``/``*.json``
    files (recursively, sorted). A missing SRC or an empty directory is an error."""
    if not paths:
        raise InputError("no input: give one or more SRC files or directories")
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found = sorted(f for f in p.rglob("*") if f.is_file() and f.name.endswith(LOG_SUFFIXES))
            if not found:
                raise InputError(f"no *.jsonl or *.json files in {p}")
            files += found
        elif p.is_file():
            if not os.access(p, os.R_OK):
                raise InputError(f"cannot read {p}: permission denied")
            files.append(p)
        else:
            raise InputError(f"input not found: {p}")
    return files


def read_records(files: Sequence[Path]) -> Iterator[Record]:
    """Every non-blank line of every file, in file then line order (blank lines are not records)."""
    for path in files:
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise InputError(f"cannot read {path}: {exc.strerror or exc}") from None
        for n, line in enumerate(data.split(b"\n"), start=1):
            if not line.strip():
                continue
            try:
                text = line.decode("utf-8")
            except UnicodeDecodeError:
                yield Record(str(path), n, line.decode("utf-8", "replace"), None, "not valid UTF-8")
                continue
            try:
                value = json.loads(text, parse_constant=_no_constant)
            except json.JSONDecodeError as exc:
                yield Record(str(path), n, text, None, f"not JSON ({exc.msg})")
                continue
            yield Record(str(path), n, text, value)


def _no_constant(name: str) -> Any:
    raise json.JSONDecodeError(f"{name} is not JSON", name, 0)


def pseudonym(source: str, raw_user: str) -> str:
    """A pseudonymous ``user_id``: ``"<source>:" + sha256(raw)[:16]``. The same raw id always
    gives the same pseudonym (batches join up; ``forget --user`` takes the pseudonym)."""
    return f"{source}:{hashlib.sha256(raw_user.encode('utf-8')).hexdigest()[:16]}"


def language_of(path: str) -> str | None:
    ext = posixpath.splitext(path.rsplit("\\", 1)[-1])[1].lower()
    return LANGUAGES.get(ext)


def parse_ts_ms(value: Any, name: str) -> int:
    """Milliseconds since the epoch from a JSON number (ms) or an ISO-8601 string."""
    if isinstance(value, bool) or value is None:
        raise Refused("wrong_type", f"{name} is not a number of ms or an ISO-8601 time")
    if isinstance(value, (int, float)):
        ms = int(value)
    elif isinstance(value, str):
        try:
            dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise Refused("wrong_type", f"{name} {value!r} is not an ISO-8601 time") from None
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=timezone.utc)
        ms = int(dt.timestamp() * 1000)
    else:
        raise Refused("wrong_type", f"{name} is not a number of ms or an ISO-8601 time")
    if not 0 <= ms <= INT64_MAX:
        raise Refused("negative_value" if ms < 0 else "wrong_type", f"{name} {value!r} is out of range")
    return ms


def need(obj: dict[str, Any], name: str, kind: type | tuple[type, ...], *, where: str = "") -> Any:
    """``obj[name]``, which must be present (not null) and of ``kind`` (bool is not int)."""
    label = f"{where}.{name}" if where else name
    if obj.get(name) is None:
        raise Refused("missing_field", f"{label} is missing")
    return check(obj[name], label, kind)


def opt(obj: dict[str, Any], name: str, kind: type | tuple[type, ...], *, where: str = "") -> Any:
    """``obj[name]`` or None; when present it must be of ``kind``."""
    if obj.get(name) is None:
        return None
    return check(obj[name], f"{where}.{name}" if where else name, kind)


def check(value: Any, label: str, kind: type | tuple[type, ...]) -> Any:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if isinstance(value, bool) and bool not in kinds:
        raise Refused("wrong_type", f"{label} is a boolean")
    if not isinstance(value, kinds):
        names = " or ".join(k.__name__ for k in kinds)
        raise Refused("wrong_type", f"{label} is not {names}")
    return value


def write_output(out: str, events: list[dict[str, Any]], tally: Tally, report: dict[str, Any]) -> dict[str, str]:
    """Write ``events.jsonl`` (contract events), ``refused.jsonl`` and ``import_report.json``
    into ``out``; each file is written to a temporary name and renamed, so an interrupted
    import never leaves a half-written ``events.jsonl`` for ``ingest`` to pick up."""
    root = Path(out)
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"cannot create --out {out}: {exc.strerror or exc}") from None
    paths = {
        "events": root / "events.jsonl",
        "refused": root / "refused.jsonl",
        "report": root / "import_report.json",
    }
    bodies = {
        "events": "".join(json.dumps(e, ensure_ascii=False, sort_keys=True) + "\n" for e in events),
        "refused": "".join(json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n" for r in tally.refused_rows),
        "report": json.dumps(report, indent=2, sort_keys=True) + "\n",
    }
    for key, path in paths.items():
        tmp = path.with_name(f".{path.name}.tmp")
        try:
            tmp.write_text(bodies[key], encoding="utf-8")
            tmp.replace(path)
        except OSError as exc:
            raise InputError(f"cannot write {path}: {exc.strerror or exc}") from None
    return {k: str(v) for k, v in paths.items()}
