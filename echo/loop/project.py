"""A synthetic "project": Python code with its own naming, idioms and APIs.

The static model is pretrained on the Python standard library; the simulated users of
the loop write this project instead. Its conventions are absent from the stdlib: a
``kx_`` API (``kx_route``, ``kx_pull``, ``kx_push``, ``KxFault``), context objects
named ``kctx``, records named ``krec``, a ``trail.kx_note`` audit line in every handler,
``kx_dump()`` returns. Entity and verb names vary per file, so files differ while the
idioms repeat. The generator is deterministic (a seed gives byte-identical files).

:func:`write_project` writes two disjoint sets of files: ``harvest/`` (what the users
whose telemetry trains the model write) and ``heldout/`` (what the evaluation users
write: same conventions, other files), so a model cannot win by memorizing files.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

NOUNS = (
    "ledger", "invoice", "parcel", "tenant", "voucher", "courier", "shipment", "quota",
    "wallet", "beacon", "ticket", "roster", "pallet", "bundle", "coupon", "depot",
    "carrier", "manifest", "batch", "refund", "station", "route", "meter", "badge",
    "lease", "permit", "vessel", "cargo", "clinic", "patient",
)  # fmt: skip
VERBS = (
    "fetch", "sync", "archive", "settle", "audit", "refresh", "dispatch", "seal",
    "tally", "revoke", "approve", "reopen",
)  # fmt: skip
FIELDS = (
    "code", "amount", "owner", "region", "status", "weight", "stamp", "label", "level",
    "origin", "target", "channel",
)  # fmt: skip


def _camel(noun: str) -> str:
    return noun[0].upper() + noun[1:]


def _handler(rng: random.Random, noun: str, verb: str, fields: list[str]) -> str:
    n, c = noun, _camel(noun)
    f1, f2 = rng.sample(fields, 2)
    lines = [
        f'@kx_route("{n}.{verb}")',
        f"def kx_{verb}_{n}(kctx: KxCtx, {n}_id: int) -> dict:",
        f"    krec = kctx.vault.kx_pull({c}Record, {n}_id)",
        "    if krec is None:",
        f'        raise KxFault.missing("{n}", {n}_id)',
    ]
    body = rng.choice(("stamp", "guard", "loop", "plain"))
    if body == "stamp":
        lines += [f"    krec.{f1} = kctx.kx_clock()"]
    elif body == "guard":
        lines += [
            f'    if krec.{f1} != "{verb}":',
            f'        raise KxFault.state("{n}", krec.{f1})',
        ]
    elif body == "loop":
        lines += [
            f"    for kitem in kctx.vault.kx_scan({c}Record, {f2}=krec.{f2}):",
            "        kitem.kx_touch(kctx)",
        ]
    lines += [
        f'    kctx.trail.kx_note("{verb}_{n}", {n}_id)',
        "    kctx.vault.kx_push(krec)",
        "    return krec.kx_dump()",
    ]
    return "\n".join(lines) + "\n"


def project_file(seed: int, index: int) -> tuple[str, str]:
    """(file name, text) of one project module."""
    rng = random.Random(f"echo-project|{seed}|{index}")
    noun = NOUNS[index % len(NOUNS)]
    if index >= len(NOUNS):
        noun = f"{noun}_{rng.choice(('entry', 'item', 'slot', 'unit'))}"
    c = _camel(noun.split("_")[0]) + "".join(_camel(p) for p in noun.split("_")[1:])
    fields = rng.sample(FIELDS, 4)
    parts = [
        f'"""Kestrel {noun} handlers."""\n',
        "from kestrel.core import KxCtx, KxFault, kx_route\n"
        "from kestrel.store import KxModel\n",
        f"class {c}Record(KxModel):\n"
        f'    kx_table = "{noun}s"\n'
        f"    kx_fields = ({', '.join(repr(f) for f in fields)})\n\n"
        "    def kx_key(self) -> str:\n"
        f'        return f"{noun}:{{self.{fields[0]}}}"\n',
    ]
    for verb in rng.sample(VERBS, rng.randint(5, 8)):
        text = _handler(rng, noun, verb, fields).replace(f"{_camel(noun)}Record", f"{c}Record")
        parts.append(text)
    return f"kx_{noun}.py", "\n\n".join(parts)


@dataclass(frozen=True)
class ProjectSplit:
    root: Path
    harvest: Path
    heldout: Path
    harvest_files: int
    heldout_files: int


def write_project(out: str | Path, *, files: int = 40, heldout_share: float = 0.34, seed: int = 0) -> ProjectSplit:
    """Write ``files`` project modules under ``out/harvest`` and ``out/heldout``."""
    root = Path(out)
    harvest, heldout = root / "harvest", root / "heldout"
    for d in (harvest, heldout):
        d.mkdir(parents=True, exist_ok=True)
        for old in d.glob("*.py"):
            old.unlink()
    n_held = max(1, round(files * heldout_share))
    counts = [0, 0]
    for i in range(files):
        name, text = project_file(seed, i)
        target = heldout if i % files >= files - n_held else harvest
        (target / name).write_text(text, encoding="utf-8")
        counts[target is heldout] += 1
    return ProjectSplit(root, harvest, heldout, counts[0], counts[1])
