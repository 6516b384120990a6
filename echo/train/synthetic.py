"""Tiny synthetic shard directories (tests, benchmark, demo without a lake).

Pairs look like code completions where the deployed model's proposal was refined by the
user in a consistent way (e.g. ``-`` became ``+``, a name was fixed), so a model trained
on them has a clear direction to move in.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from echo.shards.manifest import Manifest, describe_shard, write_manifest
from echo.train.tokenizer import DEFAULT_FIM

NAMES = ("total", "count", "price", "speed", "width", "height", "score", "delta", "offset", "ratio")
OPS = (("+", "-"), ("*", "/"), ("max", "min"))


def _pair(rng: random.Random, i: int) -> dict[str, Any]:
    a, b = rng.sample(NAMES, 2)
    fn = rng.choice(("compute", "update", "combine", "merge", "apply"))
    kind = rng.randrange(3)
    good, bad = OPS[kind]
    if kind == 2:
        final = f"return {good}({a}, {b})\n"
        proposal = f"return {bad}({a}, {b})\n"
    else:
        final = f"return {a} {good} {b}\n"
        proposal = f"return {a} {bad} {b}\n"
    prefix = f'def {fn}_{a}({a}, {b}):\n    """Combine {a} and {b}."""\n    '
    suffix = f"\n\nresult = {fn}_{a}(1, 2)\n"
    fim = DEFAULT_FIM
    return {
        "suggestion_id": f"s{i:06d}",
        "language": "python",
        "model_id": "deployed-v1",
        "prefix": prefix,
        "suffix": suffix,
        "proposal": proposal,
        "completion": final,
        "prompt": fim["prefix"] + prefix + fim["suffix"] + suffix + fim["middle"],
        "weight": rng.choice((0.5, 1.0, 1.0, 2.0)),
    }


def write_synthetic_shards(
    root: str | Path,
    n_train: int = 64,
    n_val: int = 8,
    n_test: int = 8,
    seed: int = 0,
    files_per_split: int = 2,
) -> Manifest:
    """Write ``sft/``, ``pref/`` and ``kto/`` Parquet shards plus ``manifest.json`` under
    ``root`` (KTO: even-numbered pairs' final texts desirable, odd ones' proposals not)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = random.Random(seed)
    root = Path(root)
    entries = []
    i = 0
    for split, n in (("train", n_train), ("val", n_val), ("test", n_test)):
        rows = []
        for _ in range(n):
            rows.append(_pair(rng, i))
            i += 1
        parts = max(1, min(files_per_split, n))
        for fmt in ("sft", "pref", "kto"):
            for part in range(parts):
                chunk = rows[part::parts]
                if fmt == "sft":
                    cols = [
                        "prompt",
                        "completion",
                        "weight",
                        "suggestion_id",
                        "language",
                        "model_id",
                        "proposal",
                        "prefix",
                        "suffix",
                    ]
                    data = {c: [r[c] for r in chunk] for c in cols}
                elif fmt == "kto":  # even rows kept (desirable), odd rows deleted
                    good = [int(r["suggestion_id"][1:]) % 2 == 0 for r in chunk]
                    data = {
                        "prompt": [r["prompt"] for r in chunk],
                        "completion": [
                            r["completion"] if g else r["proposal"]
                            for r, g in zip(chunk, good, strict=True)
                        ],
                        "label": good,
                        "weight": [r["weight"] for r in chunk],
                        "suggestion_id": [r["suggestion_id"] for r in chunk],
                        "language": [r["language"] for r in chunk],
                        "model_id": [r["model_id"] for r in chunk],
                        "outcome": ["kept" if g else "deleted" for g in good],
                    }
                else:
                    data = {
                        "prompt": [r["prompt"] for r in chunk],
                        "chosen": [r["completion"] for r in chunk],
                        "rejected": [r["proposal"] for r in chunk],
                        "weight": [r["weight"] for r in chunk],
                        "suggestion_id": [r["suggestion_id"] for r in chunk],
                        "language": [r["language"] for r in chunk],
                        "model_id": [r["model_id"] for r in chunk],
                    }
                rel = f"{fmt}/{split}/part-{part:05d}.parquet"
                (root / rel).parent.mkdir(parents=True, exist_ok=True)
                pq.write_table(pa.table(data), root / rel)
                entries.append(describe_shard(root, rel, fmt, split))
    manifest = Manifest(
        shards=tuple(entries), config={"synthetic": True, "seed": seed}, fim=dict(DEFAULT_FIM)
    )
    write_manifest(root, manifest)
    return manifest


TINY_LLAMA = {
    "model_type": "llama",
    "vocab_size": 384,
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 4,
    "max_position_embeddings": 512,
}
