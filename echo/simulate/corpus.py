"""The code users write: real source files from a directory (default: the Python stdlib).

Files are listed once (sorted, so a seed picks the same files on every run) and read on
demand, so a :class:`Corpus` is small and cheap to send to worker processes.
"""

from __future__ import annotations

import os
import sysconfig
from dataclasses import dataclass, field
from pathlib import Path

from echo.errors import InputError

#: file extension -> language id
LANGUAGES: dict[str, str] = {
    ".py": "python",
    ".pyi": "python",
    ".go": "go",
    ".rs": "rust",
    ".js": "javascript",
    ".mjs": "javascript",
    ".ts": "typescript",
    ".tsx": "typescriptreact",
    ".java": "java",
    ".kt": "kotlin",
    ".c": "c",
    ".h": "c",
    ".cc": "cpp",
    ".cpp": "cpp",
    ".hpp": "cpp",
    ".cs": "csharp",
    ".rb": "ruby",
    ".php": "php",
    ".swift": "swift",
    ".scala": "scala",
    ".sh": "shellscript",
    ".sql": "sql",
    ".lua": "lua",
}

_SKIP_DIRS = {"site-packages", "__pycache__", "test", "tests", "idlelib", ".git", "node_modules"}


def language_of(path: str) -> str | None:
    return LANGUAGES.get(os.path.splitext(path)[1].lower())


def default_corpus_root() -> str:
    return sysconfig.get_paths()["stdlib"]


@dataclass(frozen=True)
class CorpusFile:
    path: str  # relative to the corpus root, with '/' separators
    language: str
    text: str


@dataclass
class Corpus:
    """Source files under ``root`` with a known language, between ``min_chars`` and
    ``max_bytes`` in size."""

    root: str
    files: tuple[str, ...] = ()
    min_chars: int = 400
    max_bytes: int = 2_000_000
    _cache: dict[str, CorpusFile | None] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_dir(
        cls, root: str | os.PathLike[str] | None = None, *, min_chars: int = 400
    ) -> Corpus:
        base = Path(root) if root else Path(default_corpus_root())
        if not base.is_dir():
            raise InputError(f"corpus directory not found: {base}")
        found: list[str] = []
        for dirpath, dirnames, filenames in os.walk(base):
            dirnames[:] = sorted(
                d for d in dirnames if d not in _SKIP_DIRS and not d.startswith(".")
            )
            for name in sorted(filenames):
                if language_of(name) is None:
                    continue
                full = os.path.join(dirpath, name)
                try:
                    size = os.path.getsize(full)
                except OSError:
                    continue
                if min_chars <= size <= 2_000_000:
                    found.append(os.path.relpath(full, base).replace(os.sep, "/"))
        if not found:
            raise InputError(f"corpus directory {base} holds no source files of a known language")
        return cls(root=str(base), files=tuple(sorted(found)), min_chars=min_chars)

    def __getstate__(self) -> dict[str, object]:
        return {
            "root": self.root,
            "files": self.files,
            "min_chars": self.min_chars,
            "max_bytes": self.max_bytes,
        }

    def __setstate__(self, state: dict[str, object]) -> None:
        self.__dict__.update(state)
        self._cache = {}

    def __len__(self) -> int:
        return len(self.files)

    def load(self, rel: str) -> CorpusFile | None:
        """The file's text (UTF-8, CRLF -> LF, tabs kept); None if unreadable or too short."""
        if rel in self._cache:
            return self._cache[rel]
        result: CorpusFile | None = None
        try:
            raw = (Path(self.root) / rel).read_bytes()
            text = raw.decode("utf-8").replace("\r\n", "\n").replace("\r", "\n")
            lang = language_of(rel)
            if lang is not None and len(text.strip()) >= self.min_chars:
                result = CorpusFile(rel, lang, text)
        except (OSError, UnicodeDecodeError):
            result = None
        if len(self._cache) > 256:
            self._cache.clear()
        self._cache[rel] = result
        return result
