"""From shard files to padded training batches.

1. The driver loads ``manifest.json`` and verifies every shard it will read (size and
   SHA-256); a mismatch is a one-line :class:`~echo.shards.manifest.ManifestError`.
2. Ray Data reads the Parquet shards; :class:`DeterministicSplit` gives each worker
   a fixed, equal share (same split on every run, which exact resume needs).
3. The worker reads its share with ``ray.train.get_dataset_shard`` and tokenizes it
   (the fast Rust tokenizer, batched) into ``prompt_ids`` + ``completion_ids`` (SFT) or
   ``prompt_ids`` + ``chosen_ids`` + ``rejected_ids`` (preference), left-truncating the
   prompt to ``max_seq_len``, or ``prompt_ids`` + ``completion_ids`` + ``label`` (KTO),
   and keeps it in memory as int32 arrays. (Tokenizing in
   Ray Data tasks instead ships the tokenizer to every read task and re-imports
   transformers there: 15 s of a 2-core test run for no gain at this scale.)
4. :class:`BatchPlan` orders each epoch with a seeded hash of the pair id, groups
   similar lengths, and cuts micro-batches; the data cursor is the count of
   micro-batches consumed, so a resumed run continues at the same position.
5. ``collate_*`` pads per micro-batch (no packing, see docs/training.md) and masks the
   prompt and padding out of the labels (loss only on completion tokens).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from echo.errors import EchoError
from echo.shards.manifest import Manifest, ShardEntry, load_manifest, verify

IGNORE = -100
SFT_COLUMNS = ("suggestion_id", "prompt", "completion", "weight")
PREF_COLUMNS = ("suggestion_id", "prompt", "chosen", "rejected", "weight")
KTO_COLUMNS = ("suggestion_id", "prompt", "completion", "label", "weight")
COLUMNS = {"sft": SFT_COLUMNS, "pref": PREF_COLUMNS, "kto": KTO_COLUMNS}


class ShardDataError(EchoError):
    """The shards cannot feed this run (no rows for the objective, unreadable files)."""


def formats_for(objective: str) -> tuple[str, ...]:
    return {
        "sft": ("sft",),
        "dpo": ("pref",),
        "sft+dpo": ("sft", "pref"),
        "kto": ("kto",),
        "sft+kto": ("sft", "kto"),
    }[objective]


def primary_format(objective: str) -> str:
    """The format whose rows define an epoch (the first of the objective's formats)."""
    return formats_for(objective)[0]


def open_shards(
    root: str, fmts: Iterable[str], split: str
) -> tuple[Manifest, dict[str, list[ShardEntry]]]:
    """Load the manifest and verify the shards of ``fmts`` x ``split`` (hash and size)."""
    if not Path(root).is_dir():
        raise ShardDataError(f"shards directory not found: {root}")
    manifest = load_manifest(root)
    entries = {f: manifest.select(f, split) for f in fmts}
    for fmt, sel in entries.items():
        if not sel or sum(e.rows for e in sel) == 0:
            raise ShardDataError(f"no {fmt}/{split} rows in {root} (see manifest.json)")
    verify(root, manifest, [e for sel in entries.values() for e in sel])
    return manifest, entries


def shard_paths(root: str, entries: Sequence[ShardEntry]) -> list[str]:
    return [str(Path(root) / e.path) for e in entries]


def read_table(
    root: str, entries: Sequence[ShardEntry], columns: Sequence[str] | None = None
) -> Any:
    """The rows of some shard files as one pyarrow Table (driver, evaluation, bare loop)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        tables = [
            pq.read_table(p, columns=list(columns) if columns else None)
            for p in shard_paths(root, entries)
        ]
    except (OSError, pa.ArrowInvalid, KeyError) as exc:
        raise ShardDataError(f"cannot read shards in {root}: {str(exc).splitlines()[0]}") from None
    return pa.concat_tables(tables) if len(tables) > 1 else tables[0]


# ---------------------------------------------------------------------------- encoding


@dataclass(frozen=True)
class EncodeSpec:
    max_seq_len: int
    max_completion_tokens: int
    eos_token_id: int


def _fit(
    prompt: list[int], completions: Sequence[list[int]], spec: EncodeSpec
) -> tuple[list[int], list[list[int]]]:
    comps = [[*c[: spec.max_completion_tokens], spec.eos_token_id] for c in completions]
    budget = spec.max_seq_len - max(len(c) for c in comps)
    return (prompt[-budget:] if budget > 0 else []), comps


def encode_rows(
    tokenizer: Any, fmt: str, rows: dict[str, list[Any]], spec: EncodeSpec
) -> dict[str, list[Any]]:
    """Tokenize a batch of shard rows (column -> values); the same code serves Ray Data,
    the bare loop and the tests."""
    from echo.train.tokenizer import encode

    prompts = encode(tokenizer, rows["prompt"])
    targets = ("chosen", "rejected") if fmt == "pref" else ("completion",)
    encoded = [encode(tokenizer, [t or "" for t in rows[c]]) for c in targets]
    out: dict[str, list[Any]] = {"key": [str(k) for k in rows["suggestion_id"]], "prompt_ids": []}
    for name in targets:
        out[f"{name}_ids"] = []
    out["weight"] = [float(w) if w is not None else 1.0 for w in rows["weight"]]
    if fmt == "kto":
        out["label"] = [bool(v) for v in rows["label"]]
    for i, prompt in enumerate(prompts):
        p, comps = _fit(prompt, [e[i] for e in encoded], spec)
        out["prompt_ids"].append(p)
        for name, c in zip(targets, comps, strict=True):
            out[f"{name}_ids"].append(c)
    return out


def ray_dataset(root: str, entries: Sequence[ShardEntry], fmt: str) -> Any:
    """Ray Data: the verified Parquet shards of one format (lazy; read when Train starts)."""
    import ray.data

    columns = list(COLUMNS[fmt])
    ds = ray.data.read_parquet(shard_paths(root, entries), columns=columns)
    ds.context.enable_progress_bars = False
    return ds


def deterministic_split_config() -> Any:
    """A Ray Train ``DataConfig`` whose worker shares are the same on every run.

    The default streaming split hands blocks to whichever worker asks first; exact
    resume needs each rank to see the same pairs again, so the dataset is materialized
    in file order and cut into ``world_size`` equal parts (up to ``world_size - 1``
    rows are dropped to keep ranks in lockstep).
    """
    from ray.train import DataConfig

    class DeterministicSplit(DataConfig):
        def configure(self, datasets, world_size, worker_handles, worker_node_ids, **kwargs):
            output: list[dict[str, Any]] = [{} for _ in range(world_size)]
            for name, ds in datasets.items():
                ds = ds.copy(ds)
                ds.context.execution_options.preserve_order = True
                ds.context.enable_progress_bars = False
                parts = ds.materialize().split(world_size, equal=True)
                for i, part in enumerate(parts):
                    output[i][name] = part.iterator()
            return output

    return DeterministicSplit()


# ---------------------------------------------------------------------------- worker side


@dataclass
class Examples:
    """A worker's share of one format, sorted by pair id (run-independent order)."""

    keys: list[str]
    fields: dict[str, list[np.ndarray]]  # e.g. prompt_ids, completion_ids
    weights: np.ndarray
    labels: np.ndarray | None = None  # KTO: True for desirable rows

    def __len__(self) -> int:
        return len(self.keys)

    def lengths(self) -> np.ndarray:
        names = [n for n in self.fields if n != "prompt_ids"]
        return np.array(
            [
                len(self.fields["prompt_ids"][i]) + max(len(self.fields[n][i]) for n in names)
                for i in range(len(self))
            ]
        )


def collect(batches: Iterable[dict[str, Any]]) -> Examples:
    """Gather encoded batches (dicts of columns) into sorted in-memory :class:`Examples`."""
    cols: dict[str, list[Any]] = {}
    for b in batches:
        for k, v in b.items():
            cols.setdefault(k, []).extend(list(v))
    if not cols.get("key"):
        raise ShardDataError("this worker received no training rows (fewer rows than workers?)")
    order = sorted(range(len(cols["key"])), key=lambda i: cols["key"][i])
    ids = [k for k in cols if k.endswith("_ids")]
    return Examples(
        keys=[str(cols["key"][i]) for i in order],
        fields={k: [np.asarray(cols[k][i], dtype=np.int32) for i in order] for k in ids},
        weights=np.asarray([cols["weight"][i] for i in order], dtype=np.float64),
        labels=(
            np.asarray([bool(cols["label"][i]) for i in order], dtype=bool)
            if "label" in cols
            else None
        ),
    )


def examples_from_shard(shard: Any, tokenizer: Any, fmt: str, spec: EncodeSpec) -> Examples:
    """Read a worker's ``get_dataset_shard`` iterator fully, tokenizing batch by batch."""
    batches = shard.iter_batches(batch_size=1024, batch_format="pyarrow", prefetch_batches=1)
    return collect(encode_rows(tokenizer, fmt, b.to_pydict(), spec) for b in batches)


def _hash_order(keys: Sequence[str], seed: int, epoch: int) -> list[int]:
    def h(k: str) -> bytes:
        return hashlib.blake2b(f"{seed}:{epoch}:{k}".encode(), digest_size=8).digest()

    return sorted(range(len(keys)), key=lambda i: h(keys[i]))


@dataclass(frozen=True)
class BatchPlan:
    """Seeded, length-grouped micro-batches of one worker's examples, epoch by epoch."""

    n: int
    micro_batch_size: int
    seed: int
    group: int = 32  # micro-batches per length-sorted window

    @property
    def batches_per_epoch(self) -> int:
        return -(-self.n // self.micro_batch_size)

    def epoch(self, examples: Examples, epoch: int) -> list[list[int]]:
        order = _hash_order(examples.keys, self.seed, epoch)
        lengths = examples.lengths()
        window = self.micro_batch_size * self.group
        batches: list[list[int]] = []
        for start in range(0, len(order), window):
            chunk = sorted(order[start : start + window], key=lambda i: -int(lengths[i]))
            batches += [
                chunk[j : j + self.micro_batch_size]
                for j in range(0, len(chunk), self.micro_batch_size)
            ]
        shuffle = _hash_order([str(i) for i in range(len(batches))], self.seed, epoch + 1_000_003)
        return [batches[i] for i in shuffle]

    def stream(self, examples: Examples, start: int) -> Iterator[list[int]]:
        """Micro-batches from cursor ``start`` (micro-batches consumed so far), forever."""
        per = self.batches_per_epoch
        epoch, pos = divmod(start, per)
        while True:
            plan = self.epoch(examples, epoch)
            yield from plan[pos:]
            epoch, pos = epoch + 1, 0


def _pad(seqs: Sequence[np.ndarray], pad_id: int) -> np.ndarray:
    width = max(len(s) for s in seqs)
    out = np.full((len(seqs), width), pad_id, dtype=np.int64)
    for i, s in enumerate(seqs):
        out[i, : len(s)] = s
    return out


def _sequences(
    prompts: Sequence[np.ndarray], targets: Sequence[np.ndarray], pad_id: int
) -> dict[str, Any]:
    import torch

    full = [np.concatenate([p, t]) for p, t in zip(prompts, targets, strict=True)]
    ids = _pad(full, pad_id)
    attn = np.zeros_like(ids)
    labels = np.full_like(ids, IGNORE)
    for i, (p, t) in enumerate(zip(prompts, targets, strict=True)):
        attn[i, : len(p) + len(t)] = 1
        labels[i, len(p) : len(p) + len(t)] = t
    return {
        "input_ids": torch.from_numpy(ids),
        "attention_mask": torch.from_numpy(attn),
        "labels": torch.from_numpy(labels),
    }


def collate_sft(ex: Examples, idx: Sequence[int], pad_id: int) -> dict[str, Any]:
    import torch

    batch = _sequences(
        [ex.fields["prompt_ids"][i] for i in idx],
        [ex.fields["completion_ids"][i] for i in idx],
        pad_id,
    )
    batch["weights"] = torch.tensor(ex.weights[list(idx)], dtype=torch.float32)
    return batch


def collate_lm(rows: Sequence[Sequence[int]], pad_id: int) -> dict[str, Any]:
    """Token sequences trained whole (loss on every token, none on padding): the batches
    of language-model pretraining, in the layout of :func:`collate_sft` (unit weights)."""
    import torch

    empty = np.zeros(0, dtype=np.int64)
    batch = _sequences([empty] * len(rows), [np.asarray(r, dtype=np.int64) for r in rows], pad_id)
    batch["weights"] = torch.ones(len(rows), dtype=torch.float32)
    return batch


def collate_pref(ex: Examples, idx: Sequence[int], pad_id: int) -> dict[str, Any]:
    """Chosen rows first, then rejected rows (one forward pass for both)."""
    import torch

    prompts = [ex.fields["prompt_ids"][i] for i in idx]
    targets = [ex.fields["chosen_ids"][i] for i in idx] + [
        ex.fields["rejected_ids"][i] for i in idx
    ]
    batch = _sequences(prompts + prompts, targets, pad_id)
    batch["weights"] = torch.tensor(ex.weights[list(idx)], dtype=torch.float32)
    return batch


def collate_kto(ex: Examples, idx: Sequence[int], pad_id: int) -> dict[str, Any]:
    """KTO rows first (prompt_i + completion_i), then the mismatched rows of the KL
    estimate (prompt_i + completion_{i-1}, the completions rotated by one within the
    micro-batch, as TRL builds them); ``kto_label`` and ``weights`` cover the first half."""
    import torch

    idx = list(idx)
    prompts = [ex.fields["prompt_ids"][i] for i in idx]
    comps = [ex.fields["completion_ids"][i] for i in idx]
    rotated = comps[-1:] + comps[:-1]
    batch = _sequences(prompts + prompts, comps + rotated, pad_id)
    assert ex.labels is not None, "KTO examples carry labels"
    batch["kto_label"] = torch.tensor(ex.labels[idx], dtype=torch.bool)
    batch["weights"] = torch.tensor(ex.weights[idx], dtype=torch.float32)
    return batch


COLLATE = {"sft": collate_sft, "pref": collate_pref, "kto": collate_kto}


def local_examples(
    root: str, entries: Sequence[ShardEntry], fmt: str, tokenizer: Any, spec: EncodeSpec
) -> Examples:
    """All rows of some shards encoded in this process (bare loop, tests)."""
    rows = read_table(root, entries, COLUMNS[fmt]).to_pydict()
    return collect([encode_rows(tokenizer, fmt, rows, spec)])
