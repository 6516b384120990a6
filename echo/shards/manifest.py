"""The shard manifest: what a training run reads, with a content hash per shard.

Layout of a shards directory::

    <out>/manifest.json
    <out>/sft/train/part-00000.parquet   prompt, completion, weight, ... (prompt/completion)
    <out>/sft/val/part-00000.parquet
    <out>/sft/test/part-00000.parquet
    <out>/pref/train/part-00000.parquet  prompt, chosen, rejected, weight, ... (preference)
    <out>/pref/val/...
    <out>/kto/train/part-00000.parquet   prompt, completion, label, weight, ... (unpaired, KTO)
    <out>/kto/val/...

``manifest.json`` holds ``format_version``, ``created_at``, ``config`` (the resolved
settings), ``fim`` (sentinel tokens used to build prompts), ``source`` (lake table
versions read), ``shards`` (one entry per file: ``path`` relative to the manifest,
``format`` sft|pref|kto, ``split``, ``rows``, ``bytes``, ``sha256``) and ``manifest_sha256``,
the hash of the shard list, which a training checkpoint records.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from echo.errors import EchoError

FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"


class ManifestError(EchoError):
    """The shards directory does not match its manifest."""


@dataclass(frozen=True)
class ShardEntry:
    path: str
    format: str  # "sft" | "pref" | "kto"
    split: str  # "train" | "val" | "test"
    rows: int
    bytes: int
    sha256: str

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class Manifest:
    shards: tuple[ShardEntry, ...]
    config: dict[str, Any] = field(default_factory=dict)
    fim: dict[str, str] = field(default_factory=dict)
    source: dict[str, Any] = field(default_factory=dict)
    created_at: str = ""
    format_version: int = FORMAT_VERSION

    @property
    def sha256(self) -> str:
        """Hash of the shard list (paths, sizes, content hashes): the data identity."""
        payload = json.dumps([s.to_dict() for s in self.shards], sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()

    def select(self, fmt: str, split: str) -> list[ShardEntry]:
        return [s for s in self.shards if s.format == fmt and s.split == split]

    def to_dict(self) -> dict[str, Any]:
        return {
            "format_version": self.format_version,
            "created_at": self.created_at,
            "config": self.config,
            "fim": self.fim,
            "source": self.source,
            "shards": [s.to_dict() for s in self.shards],
            "totals": {
                "rows": sum(s.rows for s in self.shards),
                "bytes": sum(s.bytes for s in self.shards),
                "files": len(self.shards),
            },
            "manifest_sha256": self.sha256,
        }


def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def describe_shard(root: str | Path, rel_path: str, fmt: str, split: str) -> ShardEntry:
    """Build the manifest entry of one written shard file."""
    import pyarrow.parquet as pq

    full = Path(root) / rel_path
    rows = pq.read_metadata(full).num_rows
    return ShardEntry(rel_path, fmt, split, rows, full.stat().st_size, file_sha256(full))


def write_manifest(root: str | Path, manifest: Manifest) -> Path:
    path = Path(root) / MANIFEST_NAME
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(manifest.to_dict(), indent=2, sort_keys=True), encoding="utf-8")
    tmp.replace(path)  # atomic: a reader never sees half a manifest
    return path


def load_manifest(root: str | Path) -> Manifest:
    path = Path(root) / MANIFEST_NAME
    if not path.is_file():
        raise ManifestError(f"no {MANIFEST_NAME} in {root}: not a shards directory (run 'shards' first)")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        shards = tuple(ShardEntry(**s) for s in data["shards"])
    except (ValueError, KeyError, TypeError) as exc:
        raise ManifestError(f"{path} is not a valid manifest: {exc}") from None
    if data.get("format_version") != FORMAT_VERSION:
        raise ManifestError(f"{path}: unsupported format_version {data.get('format_version')!r}")
    m = Manifest(
        shards=shards,
        config=data.get("config", {}),
        fim=data.get("fim", {}),
        source=data.get("source", {}),
        created_at=data.get("created_at", ""),
    )
    recorded = data.get("manifest_sha256")
    if recorded and recorded != m.sha256:
        raise ManifestError(f"{path}: manifest_sha256 does not match its shard list (edited by hand?)")
    return m


def verify(root: str | Path, manifest: Manifest, entries: Iterable[ShardEntry] | None = None) -> None:
    """Check that every shard (or the given ones) exists with its recorded size and hash."""
    for s in manifest.shards if entries is None else entries:
        full = Path(root) / s.path
        if not full.is_file():
            raise ManifestError(f"shard {s.path} listed in the manifest is missing")
        if full.stat().st_size != s.bytes or file_sha256(full) != s.sha256:
            raise ManifestError(f"shard {s.path} does not match its manifest hash (changed after it was written)")
