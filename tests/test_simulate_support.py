"""Helpers for the simulator tests: a small corpus, an independent contract validator and
an independent replay of CONTRACT.md section 3. Its own tests check the validator
against the contract sample's expected quarantine reasons."""

from __future__ import annotations

import gzip
import json
import math
import shutil
import sysconfig
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from rapidfuzz.distance import Levenshtein

from tests.conftest import CONTRACT_SAMPLE

SAMPLE = CONTRACT_SAMPLE

COMMON = {"event_id": str, "event_type": str, "ts_ms": int, "user_id": str, "doc_id": str, "doc_version": int}
PER_TYPE: dict[str, dict[str, type]] = {
    "shown": {"suggestion_id": str, "model_id": str, "offset": int, "text": str, "prefix": str},
    "accepted": {"suggestion_id": str, "offset": int, "accepted_text": str},
    "rejected": {"suggestion_id": str},
    "edit": {"offset": int, "delete_len": int, "insert_text": str},
}
OPTIONAL: dict[str, dict[str, type]] = {
    "shown": {"suffix": str, "latency_ms": int},
    "rejected": {"reason": str},
}
TEXTS = ("text", "prefix", "suffix", "accepted_text", "insert_text")


def make_corpus(root: Path) -> Path:
    """Three languages: a few stdlib modules and generated Go and Rust files."""
    root.mkdir(parents=True, exist_ok=True)
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    for name in ("bisect.py", "colorsys.py", "keyword.py", "heapq.py", "textwrap.py"):
        shutil.copy(stdlib / name, root / name)
    go = ["package util", "", 'import "fmt"', ""]
    rs = ["use std::collections::HashMap;", ""]
    for i in range(40):
        go += [f"func helper{i}(x int) (int, error) {{", f"    if x < {i} {{",
               '        return 0, fmt.Errorf("too small: %d", x)', "    }", f"    return x * {i + 1}, nil", "}", ""]
        rs += [f"pub fn helper_{i}(map: &HashMap<String, i64>) -> i64 {{",
               f'    let v = map.get("k{i}").copied().unwrap_or(0);', f"    v * {i + 2} // «ünïcode» ✓", "}", ""]
    (root / "sub").mkdir(exist_ok=True)
    (root / "sub" / "util.go").write_text("\n".join(go) + "\n", encoding="utf-8")
    (root / "sub" / "lib.rs").write_text("\n".join(rs) + "\n", encoding="utf-8")
    (root / "README.txt").write_text("not code\n" * 100, encoding="utf-8")
    return root


def read_raw(batch_dir: Path) -> Iterator[tuple[str, bytes | dict[str, Any]]]:
    """(file name, raw record) in ingestion order; blank lines are not records."""
    for f in sorted(batch_dir.iterdir()):
        if f.name.endswith(".parquet"):
            for row in pq.read_table(f).to_pylist():
                yield f.name, {k: v for k, v in row.items() if v is not None}
            continue
        data = gzip.decompress(f.read_bytes()) if f.name.endswith(".gz") else f.read_bytes()
        for line in data.split(b"\n"):
            if line.strip():
                yield f.name, line


def _no_nan(x: str) -> Any:
    raise ValueError(x)


def check(raw: bytes | dict[str, Any]) -> tuple[str | None, dict[str, Any] | None]:
    """(quarantine reason or None, parsed record) by CONTRACT.md 1.2."""
    if isinstance(raw, dict):
        rec: Any = raw
    else:
        try:
            rec = json.loads(raw.decode("utf-8"), parse_constant=_no_nan)
        except (UnicodeDecodeError, ValueError):
            return "invalid_json", None
    if not isinstance(rec, dict):
        return "invalid_json", None
    fields = dict(COMMON)
    etype = rec.get("event_type")
    if isinstance(etype, str) and etype in PER_TYPE:
        fields.update(PER_TYPE[etype])
    if any(rec.get(k) is None for k in fields):
        return "missing_field", rec
    for k, tp in fields.items():
        v = rec[k]
        ok = (isinstance(v, int) and not isinstance(v, bool)) if tp is int else isinstance(v, tp)
        if not ok:
            return "wrong_type", rec
    if etype not in PER_TYPE:
        return "unknown_event_type", rec
    if any(isinstance(rec.get(k), int) and rec[k] < 0 for k in ("offset", "delete_len", "doc_version")):
        return "negative_value", rec
    if any(isinstance(rec.get(k), str) and len(rec[k].encode("utf-8")) > 1_048_576 for k in TEXTS):
        return "text_too_large", rec
    return None, rec


def canonical(rec: dict[str, Any]) -> str:
    return json.dumps(rec, sort_keys=True, ensure_ascii=False)


def ingest(batch_dirs: list[Path]) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """Events kept (first of each event_id) and counts by quarantine reason / duplicates."""
    kept: dict[str, str] = {}
    events: list[dict[str, Any]] = []
    counts: dict[str, int] = defaultdict(int)
    for d in batch_dirs:
        for _, raw in read_raw(d):
            reason, rec = check(raw)
            if reason is None and rec is not None:
                c = canonical(rec)
                if rec["event_id"] in kept:
                    reason = "duplicate" if kept[rec["event_id"]] == c else "conflicting_duplicate"
                else:
                    kept[rec["event_id"]] = c
                    events.append(rec)
            if reason is not None:
                counts[reason] += 1
    return events, counts


def replay_outcomes(
    events: list[dict[str, Any]], *, gap_s: int = 1800, window_s: int = 600, min_sim: float = 0.5
) -> dict[str, tuple[str, str | None, float | None]]:
    """CONTRACT.md section 3, written from the text: suggestion_id -> (outcome, final_text, similarity)."""
    by_user: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for e in events:
        by_user[e["user_id"]].append(e)
    session_end: dict[str, int] = {}
    for evs in by_user.values():
        evs.sort(key=lambda e: (e["ts_ms"], e["event_id"]))
        start = 0
        for i in range(1, len(evs) + 1):
            if i == len(evs) or evs[i]["ts_ms"] - evs[i - 1]["ts_ms"] > gap_s * 1000:
                for e in evs[start:i]:
                    session_end[e["event_id"]] = evs[i - 1]["ts_ms"]
                start = i
    changes: dict[str, list[dict[str, Any]]] = defaultdict(list)
    shown: dict[str, dict[str, Any]] = {}
    accepts: dict[str, list[dict[str, Any]]] = defaultdict(list)
    rejected: set[str] = set()
    for e in events:
        t = e["event_type"]
        if t in ("edit", "accepted"):
            changes[e["doc_id"]].append(e)
        if t == "shown":
            old = shown.get(e["suggestion_id"])
            if old is None or (e["ts_ms"], e["event_id"]) < (old["ts_ms"], old["event_id"]):
                shown[e["suggestion_id"]] = e
        elif t == "accepted":
            accepts[e["suggestion_id"]].append(e)
        elif t == "rejected":
            rejected.add(e["suggestion_id"])
    by_version: dict[str, dict[int, list[dict[str, Any]]]] = {}
    for doc, chs in changes.items():
        m: dict[int, list[dict[str, Any]]] = defaultdict(list)
        for c in chs:
            m[c["doc_version"]].append(c)
        by_version[doc] = m

    def content(c: dict[str, Any]) -> tuple[Any, ...]:
        return tuple(c.get(k) for k in ("event_type", "offset", "delete_len", "insert_text", "accepted_text", "suggestion_id"))

    out: dict[str, tuple[str, str | None, float | None]] = {}
    for sid in shown:
        if sid not in accepts:
            out[sid] = ("rejected" if sid in rejected else "ignored", None, None)
            continue
        first = min(accepts[sid], key=lambda e: (e["doc_version"], e["ts_ms"], e["event_id"]))
        text = full = first["accepted_text"]
        a = first["offset"]
        b = a + len(text)
        horizon = min(first["ts_ms"] + window_s * 1000, session_end[first["event_id"]])
        versions = by_version[first["doc_id"]]
        later = sorted(v for v in versions if v > first["doc_version"])
        expected = first["doc_version"] + 1
        gap = False
        for v in later:
            group = versions[v]
            if len({content(c) for c in group}) > 1 and v == expected:
                gap = True
                break
            c = group[0]
            if c["ts_ms"] > horizon:
                break
            if v != expected:
                gap = True
                break
            expected += 1
            if c["event_type"] == "accepted" and c["suggestion_id"] == sid and c["offset"] == b:
                text += c["accepted_text"]
                full += c["accepted_text"]
                b += len(c["accepted_text"])
                continue
            p = c["offset"]
            d = c.get("delete_len", 0)
            s = c["insert_text"] if c["event_type"] == "edit" else c["accepted_text"]
            if p + d <= a:
                a += len(s) - d
                b += len(s) - d
            elif p >= b:
                pass
            else:
                text = text[: max(0, p - a)] + s + text[p + d - a :]
                a = min(a, p)
                b = a + len(text)
        if gap:
            out[sid] = ("replay_gap", None, None)
            continue
        sim = 1 - Levenshtein.distance(full, text) / max(len(full), len(text), 1)
        if text.strip() == "" and full.strip() != "":
            o = "deleted"
        elif text == full:
            o = "kept"
        elif sim >= min_sim:
            o = "refined"
        else:
            o = "rewritten"
        out[sid] = (o, text, sim)
    return out


@pytest.mark.skipif(not SAMPLE.exists(), reason="contract sample not available")
def test_validator_matches_contract_sample_quarantine() -> None:
    expected = json.loads((SAMPLE / "expected.json").read_text())
    got = []
    for i, line in enumerate((SAMPLE / "events.jsonl").read_bytes().split(b"\n"), start=1):
        if line.strip():
            reason, _ = check(line)
            if reason:
                got.append((i, reason))
    want = [(q["line_no"], q["reason"]) for q in expected["quarantine"] if q["reason"] != "conflicting_duplicate"]
    assert got == want


@pytest.mark.skipif(not SAMPLE.exists(), reason="contract sample not available")
def test_replay_matches_contract_sample_outcomes() -> None:
    expected = json.loads((SAMPLE / "expected.json").read_text())
    events, _ = ingest([SAMPLE])
    got = replay_outcomes(events)
    for s in expected["suggestions"]:
        if s["outcome"] == "orphan":
            continue
        o, final, sim = got[s["suggestion_id"]]
        assert (o, final) == (s["outcome"], s["final_text"]), s["suggestion_id"]
        if sim is not None:
            assert math.isclose(sim, s["edit_similarity"], abs_tol=1e-9)
