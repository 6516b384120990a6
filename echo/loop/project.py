"""Synthetic service code in two conventions: the deployment's project and public code.

The loop's users write **Kestrel**, a code base with its own internal API: a ``kx_``
API (``@kx_route``, ``ctx.vault.kx_pull``, ``kx_push``, ``KxFault.missing``), a
``ctx.trail.kx_note`` audit line in every handler, ``kx_dump()`` returns. None of this is
in the static model's data; the ordinary names (``ctx``, ``record``, ``item``) and the
shape of a handler are.

The static model's data is the Python standard library plus **public** service code:
the same kind of handlers (look up a record, check it, change it, log, save, return)
written the way open-source web services write them (``@app.route``, ``ctx.db.get``,
``record``, ``NotFound``, ``to_dict()``). That is the situation of a team that adopts a
code model pretrained on public code: it knows the shape of a request handler, not the
team's internal API. Its proposals on Kestrel code are often close but wrong in the
project's names, which is exactly what users accept and then fix.

Entity and verb names vary per file, so files differ while the idioms repeat. The
generator is deterministic (a seed gives byte-identical files).

:func:`write_project` writes two disjoint sets of Kestrel files: ``harvest/`` (what the
users whose telemetry trains the model write) and ``heldout/`` (what the evaluation
users write: same conventions, other files), so a model cannot win by memorizing files.
:func:`public_files` gives the public-style texts for the static model's pretraining.
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


@dataclass(frozen=True)
class Style:
    """The names and idioms of one code base ({n}: noun, {v}: verb, {c}: class stem)."""

    name: str
    imports: str
    base: str  # record base class
    table: str  # class attribute naming the table
    fields: str  # class attribute listing the fields
    key: str  # method returning the key
    route: str
    func: str
    ctx: str  # context parameter "name: Type"
    pull: str
    rec: str  # the record's variable name
    missing: str
    state: str
    clock: str
    scan: str
    item: str
    touch: str
    note: str
    push: str
    dump: str


KESTREL = Style(
    name="kestrel",
    imports="from kestrel.core import KxCtx, KxFault, kx_route\nfrom kestrel.store import KxModel\n",
    base="KxModel", table="kx_table", fields="kx_fields", key="kx_key",
    route='@kx_route("{n}.{v}")', func="kx_{v}_{n}", ctx="ctx: KxCtx",
    pull="ctx.vault.kx_pull({c}Record, {n}_id)", rec="record",
    missing='KxFault.missing("{n}", {n}_id)', state='KxFault.state("{n}", record.{f})',
    clock="ctx.kx_clock()", scan="ctx.vault.kx_scan({c}Record, {f}=record.{f})",
    item="item", touch="item.kx_touch(ctx)", note='ctx.trail.kx_note("{v}_{n}", {n}_id)',
    push="ctx.vault.kx_push(record)", dump="record.kx_dump()",
)  # fmt: skip
PUBLIC = Style(
    name="public",
    imports="from app.core import Context, NotFound, Conflict, app\nfrom app.models import Model\n",
    base="Model", table="table_name", fields="columns", key="get_key",
    route='@app.route("/{n}/{v}")', func="{v}_{n}", ctx="ctx: Context",
    pull="ctx.db.get({c}Record, {n}_id)", rec="record",
    missing='NotFound("{n}", {n}_id)', state='Conflict("{n}", record.{f})',
    clock="ctx.now()", scan="ctx.db.query({c}Record, {f}=record.{f})",
    item="item", touch="item.touch(ctx)", note='ctx.log.info("{v}_{n}", {n}_id)',
    push="ctx.db.save(record)", dump="record.to_dict()",
)  # fmt: skip


def _camel(noun: str) -> str:
    return "".join(p[0].upper() + p[1:] for p in noun.split("_"))


def _handler(rng: random.Random, st: Style, noun: str, verb: str, fields: list[str]) -> str:
    f1, f2 = rng.sample(fields, 2)
    names = {"n": noun, "v": verb, "c": _camel(noun)}

    def fmt(template: str, f: str = f1) -> str:
        return template.format(f=f, **names)

    r = st.rec
    lines = [
        fmt(st.route),
        f"def {fmt(st.func)}({st.ctx}, {noun}_id: int) -> dict:",
        f"    {r} = {fmt(st.pull)}",
        f"    if {r} is None:",
        f"        raise {fmt(st.missing)}",
    ]
    body = rng.choice(("stamp", "guard", "loop", "plain"))
    if body == "stamp":
        lines += [f"    {r}.{f1} = {st.clock}"]
    elif body == "guard":
        lines += [f'    if {r}.{f1} != "{verb}":', f"        raise {fmt(st.state)}"]
    elif body == "loop":
        lines += [f"    for {st.item} in {fmt(st.scan, f2)}:", f"        {st.touch}"]
    lines += [f"    {fmt(st.note)}", f"    {st.push}", f"    return {st.dump}"]
    return "\n".join(lines) + "\n"


def service_file(style: Style, seed: int, index: int) -> tuple[str, str]:
    """(file name, text) of one service module in ``style``."""
    rng = random.Random(f"echo-project|{style.name}|{seed}|{index}")
    noun = NOUNS[index % len(NOUNS)]
    if index >= len(NOUNS):
        noun = f"{noun}_{rng.choice(('entry', 'item', 'slot', 'unit'))}"
    c = _camel(noun)
    fields = rng.sample(FIELDS, 4)
    key_expr = f'f"{noun}:{{self.{fields[0]}}}"'
    parts = [
        f'"""{style.name.capitalize()} {noun} handlers."""\n',
        style.imports,
        f"class {c}Record({style.base}):\n"
        f'    {style.table} = "{noun}s"\n'
        f"    {style.fields} = ({', '.join(repr(f) for f in fields)})\n\n"
        f"    def {style.key}(self) -> str:\n"
        f"        return {key_expr}\n",
    ]
    for verb in rng.sample(VERBS, rng.randint(5, 8)):
        parts.append(_handler(rng, style, noun, verb, fields))
    prefix = "kx_" if style is KESTREL else ""
    return f"{prefix}{noun}.py", "\n\n".join(parts)


def project_file(seed: int, index: int) -> tuple[str, str]:
    """(file name, text) of one Kestrel module."""
    return service_file(KESTREL, seed, index)


def public_files(count: int, *, seed: int = 0) -> list[str]:
    """``count`` public-style service modules (texts) for the static model's data."""
    return [service_file(PUBLIC, seed, i)[1] for i in range(count)]


@dataclass(frozen=True)
class ProjectSplit:
    root: Path
    harvest: Path
    heldout: Path
    harvest_files: int
    heldout_files: int


def write_project(out: str | Path, *, files: int = 40, heldout_share: float = 0.34, seed: int = 0) -> ProjectSplit:
    """Write ``files`` Kestrel modules under ``out/harvest`` and ``out/heldout``."""
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
        target = heldout if i >= files - n_held else harvest
        (target / name).write_text(text, encoding="utf-8")
        counts[target is heldout] += 1
    return ProjectSplit(root, harvest, heldout, counts[0], counts[1])
