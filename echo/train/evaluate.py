"""``python -m echo evaluate``: offline evaluation of a model on the val/test pairs.

For each SFT pair of the split the model completes the FIM prompt greedily; the
completion is compared with the user's final text (exact match, edit similarity
``1 - levenshtein / max(len)``, and the share at or above the keep threshold, i.e. a
suggestion the user would have kept or refined: ``--keep-similarity``, default the
contract's ``min_refine_similarity`` 0.5). The logged
proposals of the deployed model (column ``proposal``) are scored the same way in the
same run, so the report says whether the new model beats the deployed one.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from echo import contract
from echo.config import ConfigParser, Validated, add_config_args, add_flag, resolve, setting
from echo.errors import ConfigError, EchoError
from echo.tracking import TrackingConfig, tracked
from echo.train.data import open_shards, read_table

KEEP_THRESHOLD = contract.MIN_REFINE_SIMILARITY  # CONTRACT.md section 3


def keep_threshold(override: float | None) -> tuple[float, str]:
    """The "would have been kept" similarity and where it came from (setting/contract)."""
    if override is not None:
        value, source = float(override), "setting"
    else:
        value, source = KEEP_THRESHOLD, "contract default"
    if not 0.0 <= value <= 1.0:
        raise EchoError(f"keep similarity must be within [0, 1], not {value} ({source})")
    return value, source


def edit_similarity(a: str, b: str) -> float:
    from rapidfuzz.distance import Levenshtein

    return 1.0 - Levenshtein.distance(a, b) / max(len(a), len(b), 1)


def score(
    predictions: Sequence[str], targets: Sequence[str], threshold: float = KEEP_THRESHOLD
) -> dict[str, float]:
    sims = [edit_similarity(p, t) for p, t in zip(predictions, targets, strict=True)]
    n = max(len(sims), 1)
    return {
        "exact_match": sum(p == t for p, t in zip(predictions, targets, strict=True)) / n,
        "edit_similarity": sum(sims) / n,
        "kept_share": sum(s >= threshold for s in sims) / n,
    }


def _load(model_dir: str) -> tuple[Any, Any]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    p = Path(model_dir)
    if not (p / "config.json").is_file():
        raise EchoError(
            f"model not found: {model_dir} (a directory saved by 'train', with config.json)"
        )
    try:
        tok = AutoTokenizer.from_pretrained(p, local_files_only=True)
        model = AutoModelForCausalLM.from_pretrained(p, local_files_only=True)
    except (OSError, ValueError) as exc:
        raise EchoError(f"cannot load model {model_dir}: {str(exc).splitlines()[0]}") from None
    return tok, model.eval()


def generate(
    model: Any,
    tok: Any,
    prompts: Sequence[str],
    *,
    max_new_tokens: int,
    max_prompt_tokens: int,
    batch_size: int,
    progress: bool = False,
) -> list[str]:
    """Greedy completions (left-padded batches, prompts left-truncated), up to the end token."""
    import torch

    from echo.train.tokenizer import encode

    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    from echo.progress import bar

    outs: list[str] = []
    status = bar("evaluate", len(prompts), "prompts", quiet=not progress)
    for start in range(0, len(prompts), batch_size):
        ids = [x[-max_prompt_tokens:] for x in encode(tok, prompts[start : start + batch_size])]
        width = max(len(x) for x in ids)
        input_ids = torch.tensor([[pad] * (width - len(x)) + x for x in ids])
        attn = torch.tensor([[0] * (width - len(x)) + [1] * len(x) for x in ids])
        with torch.no_grad():
            gen = model.generate(
                input_ids=input_ids,
                attention_mask=attn,
                max_new_tokens=max_new_tokens,
                do_sample=False,
                pad_token_id=pad,
                eos_token_id=tok.eos_token_id,
            )
        outs += tok.batch_decode(gen[:, width:], skip_special_tokens=True)
        status.update(len(ids))
    status.close()
    return outs


def evaluate(
    model: str,
    shards: str,
    split: str = "val",
    *,
    max_new_tokens: int = 64,
    max_prompt_tokens: int = 448,
    batch_size: int = 8,
    limit: int = 0,
    keep_similarity: float | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Score ``model`` and the logged proposals against the final texts of ``split``.

    ``keep_similarity``: the threshold of the kept share (None: the contract's 0.5).
    """
    if split not in ("train", "val", "test"):
        raise EchoError(f"split must be train, val or test, not {split!r}")
    manifest, entries = open_shards(shards, ("sft",), split)
    threshold, threshold_source = keep_threshold(keep_similarity)
    table = read_table(
        shards, entries["sft"], ["prompt", "completion", "proposal", "language", "suggestion_id"]
    )
    rows = table.to_pydict()
    if limit > 0:
        rows = {k: v[:limit] for k, v in rows.items()}
    tok, lm = _load(model)
    preds = generate(
        lm,
        tok,
        rows["prompt"],
        max_new_tokens=max_new_tokens,
        max_prompt_tokens=max_prompt_tokens,
        batch_size=batch_size,
        progress=progress,
    )
    finals = [c or "" for c in rows["completion"]]
    proposals = [p or "" for p in rows["proposal"]]
    report: dict[str, Any] = {
        "model": str(model),
        "shards": str(shards),
        "split": split,
        "manifest_sha256": manifest.sha256,
        "pairs": len(finals),
        "keep_threshold": threshold,
        "keep_threshold_source": threshold_source,
        "model_metrics": score(preds, finals, threshold),
        "proposal_metrics": score(proposals, finals, threshold),
    }
    report["delta"] = {
        k: report["model_metrics"][k] - report["proposal_metrics"][k]
        for k in report["model_metrics"]
    }
    by_lang: dict[str, Any] = {}
    for lang in sorted({str(x) for x in rows["language"]}):
        idx = [i for i, x in enumerate(rows["language"]) if str(x) == lang]
        by_lang[lang] = {
            "pairs": len(idx),
            "model": score([preds[i] for i in idx], [finals[i] for i in idx], threshold),
            "proposal": score([proposals[i] for i in idx], [finals[i] for i in idx], threshold),
        }
    report["by_language"] = by_lang
    report["examples"] = [
        {
            "suggestion_id": rows["suggestion_id"][i],
            "final": finals[i],
            "proposal": proposals[i],
            "model": preds[i],
        }
        for i in range(min(5, len(preds)))
    ]
    return report


@dataclass(frozen=True)
class EvalConfig(Validated):
    """Settings of ``evaluate``: which model, on which pairs, with which budgets."""

    model: str = setting("", "model directory (e.g. OUT/model from 'train')", required=True)
    shards: str = setting("", "shards directory with manifest.json", required=True)
    split: str = setting("val", "pairs to evaluate on", choices=("val", "test", "train"))
    max_new_tokens: int = setting(64, "tokens the model may generate per prompt")
    max_prompt_tokens: int = setting(448, "prompt tokens kept (from the right)")
    batch_size: int = setting(8, "prompts generated together")
    limit: int = setting(0, "evaluate only the first N pairs (0: all)")
    keep_similarity: float = setting(
        contract.MIN_REFINE_SIMILARITY,
        "edit similarity at or above which a suggestion counts as kept (the contract's "
        "min_refine_similarity)",
    )
    out: str = setting("", "write the JSON report here (default: stdout)")

    def validate(self) -> None:
        for name in ("max_new_tokens", "max_prompt_tokens", "batch_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"--{name.replace('_', '-')} must be >= 1")
        if self.limit < 0:
            raise ConfigError("--limit must be >= 0")
        if not 0.0 <= self.keep_similarity <= 1.0:
            raise ConfigError("--keep-similarity must be within [0, 1]")


def build_parser() -> argparse.ArgumentParser:
    p = ConfigParser(
        prog="echo-pipeline evaluate", description=__doc__.splitlines()[0] if __doc__ else None
    )
    add_flag(p, "quiet", "no progress bar")
    add_config_args(p, EvalConfig, TrackingConfig)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    a = build_parser().parse_args(argv)
    cfg, tracking = resolve(a, EvalConfig, TrackingConfig)
    with tracked(tracking, f"evaluate-{cfg.split}", command="evaluate") as run:
        report = _evaluate_main(cfg, progress=not a.quiet)
        if run is not None:
            from echo.tracking import log_evaluation

            log_evaluation(run, dataclasses.asdict(cfg), report)
    return 0


def _evaluate_main(a: EvalConfig, *, progress: bool) -> dict[str, Any]:
    report = evaluate(
        a.model,
        a.shards,
        a.split,
        max_new_tokens=a.max_new_tokens,
        max_prompt_tokens=a.max_prompt_tokens,
        batch_size=a.batch_size,
        limit=a.limit,
        keep_similarity=a.keep_similarity,
        progress=progress,
    )
    text = json.dumps(report, indent=2)
    if a.out:
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        Path(a.out).write_text(text + "\n", encoding="utf-8")
        m, b = report["model_metrics"], report["proposal_metrics"]
        print(
            f"evaluate: {report['pairs']} {a.split} pairs; edit similarity model {m['edit_similarity']:.3f} "
            f"vs deployed {b['edit_similarity']:.3f}; kept {m['kept_share']:.1%} vs {b['kept_share']:.1%} -> {a.out}"
        )
    else:
        sys.stdout.write(text + "\n")
    return report
