"""Throughput of the full Ray Train + DeepSpeed path vs a bare single-process torch loop.

Same model (built from a config), same synthetic shards, same global batch per optimizer
step, same objective, in the same run. Prints one JSON object; the ratio is what matters
(absolute numbers depend on the machine and its load).

    python benchmarks/bench_train.py --steps 30 --zero-stage 2 --objective sft
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

MODEL = {
    "model_type": "llama",
    "vocab_size": 1024,
    "hidden_size": 128,
    "intermediate_size": 344,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 4,
    "max_position_embeddings": 512,
}


def bare(root: Path, args: argparse.Namespace, threads: int) -> dict[str, Any]:
    import torch

    from echo.train.bare import bare_train
    from echo.train.data import EncodeSpec, formats_for, local_examples, open_shards
    from echo.train.model import build_model, build_tokenizer, resolve_model_spec, tokenizer_info
    from echo.train.trainer import _texts

    torch.set_num_threads(threads)
    fmts = formats_for(args.objective)
    manifest, entries = open_shards(str(root / "shards"), fmts, "train")
    spec = resolve_model_spec(str(root / "model.json"))
    tok = build_tokenizer(
        spec, lambda: _texts(str(root / "shards"), entries, manifest.fim), manifest.fim
    )
    enc = EncodeSpec(512, 128, tok.eos_token_id)
    examples = {f: local_examples(str(root / "shards"), entries[f], f, tok, enc) for f in fmts}
    model = build_model(spec.to_dict(), tokenizer_info(tok), seed=0)
    warm = bare_train(
        model,
        args.objective,
        examples,
        steps=2,
        micro_batch_size=args.micro_batch_size * args.workers,
        lr=1e-3,
        pad_id=tok.pad_token_id,
    )
    res = bare_train(
        model,
        args.objective,
        examples,
        steps=args.steps - 2,
        micro_batch_size=args.micro_batch_size * args.workers,
        lr=1e-3,
        pad_id=tok.pad_token_id,
    )
    return {
        "threads": threads,
        "tokens_per_s": res.tokens_per_s,
        "tokens": res.tokens + warm.tokens,
        "step_s_median": res.seconds / max(len(res.losses), 1),
    }


def ray_path(root: Path, args: argparse.Namespace) -> dict[str, Any]:
    import ray

    from echo.train import TrainConfig, train

    t0 = time.perf_counter()
    ray.init(
        num_cpus=args.cpus,
        include_dashboard=False,
        runtime_env={"env_vars": {"DS_ACCELERATOR": "cpu"}},
    )
    cfg = TrainConfig(
        shards=str(root / "shards"),
        model=str(root / "model.json"),
        out=str(root / "ray-out"),
        objective=args.objective,
        num_workers=args.workers,
        zero_stage=args.zero_stage,
        max_steps=args.steps,
        micro_batch_size=args.micro_batch_size,
        lr=1e-3,
        max_completion_tokens=128,
    )
    t1 = time.perf_counter()
    result = train(cfg)
    wall = time.perf_counter() - t1
    ray.shutdown()
    steady = result.metrics[2:]  # the first steps include lazy init and allocator warm-up
    return {
        "workers": args.workers,
        "zero_stage": args.zero_stage,
        "tokens_per_s": statistics.median(r["tokens_per_s"] for r in steady),
        "step_s_median": statistics.median(r["step_time_s"] for r in steady),
        "train_call_wall_s": wall,
        "ray_init_s": t1 - t0,
        "tokens": sum(r["tokens"] for r in result.metrics),
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--cpus", type=int, default=2)
    p.add_argument("--zero-stage", type=int, default=2)
    p.add_argument(
        "--micro-batch-size", type=int, default=4, help="per worker; the bare loop uses x workers"
    )
    p.add_argument("--objective", default="sft", choices=("sft", "dpo", "sft+dpo"))
    p.add_argument("--pairs", type=int, default=512)
    p.add_argument("--out", default="", help="also write the JSON report to this file")
    args = p.parse_args()

    from echo.train.synthetic import write_synthetic_shards

    with tempfile.TemporaryDirectory(prefix="echo-bench-train-") as tmp:
        root = Path(tmp)
        write_synthetic_shards(root / "shards", n_train=args.pairs, n_val=8, n_test=8)
        (root / "model.json").write_text(json.dumps(MODEL), encoding="utf-8")
        bare1 = bare(root, args, threads=1)
        bare2 = bare(root, args, threads=args.cpus)
        rp = ray_path(root, args)
        best_bare = max(bare1["tokens_per_s"], bare2["tokens_per_s"])
        out = {
            "command": "python benchmarks/bench_train.py " + " ".join(sys.argv[1:]),
            "objective": args.objective,
            "steps": args.steps,
            "global_batch_pairs": args.micro_batch_size * args.workers,
            "bare_1_thread": bare1,
            f"bare_{args.cpus}_threads": bare2,
            "ray_deepspeed": rp,
            "steady_throughput_ratio_ray_over_best_bare": rp["tokens_per_s"] / best_bare,
            "wall_ratio_ray_train_call_over_best_bare_steps": rp["train_call_wall_s"]
            / (rp["tokens"] / best_bare),
        }
        text = json.dumps(out, indent=2)
        if args.out:
            Path(args.out).write_text(text + "\n", encoding="utf-8")
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
