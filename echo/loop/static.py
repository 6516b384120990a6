"""The static baseline: a tiny causal LM pretrained only on "static human data".

The data is a code corpus (default: the Python standard library, the simulator's default
corpus) and, mixed in at ``public_share`` of the samples, public-style service code
(:func:`echo.loop.project.public_files`: handlers written the open-source way, none of
the deployment project's conventions). A byte-level BPE is trained on it locally (``tokenizers``; nothing is
downloaded), then a GPT-2-style model built from a config learns fill-in-the-middle
completions in the deployment's format: ``<fim_prefix>prefix<fim_suffix>suffix
<fim_middle>middle<|endoftext|>``, where the middle is the rest of a line (or a whole
line at a line start), which is what the simulator's users are offered. The loss is on
every token (prefix, suffix and middle), which teaches more per step than the middle alone.
The optimization is :func:`echo.train.bare.fit`, the batches :func:`echo.train.data.collate_lm`
and the loss :func:`echo.train.objectives.sft_loss`: the code the fine-tuning runs on.
The result is a ``save_pretrained`` directory (model + tokenizer) that both the
transformers proposer and the Ray trainer load.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from echo.simulate.corpus import Corpus
from echo.train.tokenizer import DEFAULT_FIM, EOS


@dataclass
class StaticResult:
    model_path: str
    files: int
    steps: int
    tokens: int
    seconds: float
    losses: list[float] = field(default_factory=list)
    params: int = 0


def corpus_texts(corpus: Corpus, max_files: int, seed: int, max_chars: int = 20_000) -> list[str]:
    rng = random.Random(f"static|{seed}")
    files = list(corpus.files)
    rng.shuffle(files)
    out: list[str] = []
    for rel in files:
        f = corpus.load(rel)
        if f is None or f.language != "python":
            continue
        out.append(f.text[:max_chars])
        if len(out) >= max_files:
            break
    return out


def fim_sample(text: str, rng: random.Random, prefix_chars: int, suffix_chars: int) -> tuple[str, str, str]:
    """(prefix, suffix, middle) at a random cursor: the middle is the rest of the line,
    or the next whole line when the cursor is at a line start."""
    pos = rng.randrange(1, max(2, len(text) - 1))
    if rng.random() < 0.4:  # often at a line start (requests are likelier after a newline)
        nl = text.rfind("\n", 0, pos)
        pos = nl + 1
        while pos < len(text) and text[pos] == " ":
            pos += 1
    end = text.find("\n", pos)
    end = len(text) if end < 0 else end
    if end == pos:  # an empty rest of line: the next line
        nxt = text.find("\n", end + 1)
        end = len(text) if nxt < 0 else nxt
    return text[max(0, pos - prefix_chars) : pos], text[end : end + suffix_chars], text[pos:end]


def fim_parts(prefix: str, suffix: str, middle: str, mode: str) -> tuple[str, str]:
    """(prompt, completion) of one pretraining sample: the deployment's prompt (``mode`` as
    the shards' ``--fim-mode``: ``psm`` fill-in-the-middle, ``lm`` the prefix alone), then
    the middle and EOS. The two are tokenized apart, as the proposer and the trainer do,
    so a token never spans the cursor (a prompt ending in indentation stays in-distribution)."""
    if mode == "lm":
        return prefix, f"{middle}{EOS}"
    fp, fs, fm = DEFAULT_FIM["prefix"], DEFAULT_FIM["suffix"], DEFAULT_FIM["middle"]
    return f"{fp}{prefix}{fs}{suffix}{fm}", f"{middle}{EOS}"


def _batches(
    texts: list[str], extra: list[str], extra_share: float, tok: Any, rng: random.Random, batch: int,
    max_len: int, prefix_chars: int, suffix_chars: int, fim_mode: str,
) -> Iterator[list[list[int]]]:
    while True:
        rows = []
        for _ in range(batch):
            pool = extra if extra and rng.random() < extra_share else texts
            text = pool[rng.randrange(len(pool))]
            pre, suf, mid = fim_sample(text, rng, prefix_chars, suffix_chars)
            prompt, completion = fim_parts(pre, suf, mid, fim_mode)
            ids = [*tok(prompt, add_special_tokens=False)["input_ids"],
                   *tok(completion, add_special_tokens=False)["input_ids"]]  # fmt: skip
            rows.append(ids[-max_len:])
        yield rows


def pretrain_static(
    out: str | Path,
    *,
    corpus: Corpus,
    model_config: dict[str, Any],
    steps: int,
    batch_size: int,
    lr: float,
    max_files: int,
    vocab_size: int,
    seed: int,
    prefix_chars: int,
    suffix_chars: int,
    extra_texts: list[str] | None = None,
    extra_share: float = 0.0,
    fim_mode: str = "psm",
    log: Any = None,
    progress: bool = False,
) -> StaticResult:
    """Train the tokenizer and the static model (on :func:`echo.train.bare.fit`, a linear
    warm-up of 20 steps, then a linear decay to a tenth); save both to ``out``.
    ``progress``: a progress bar with the time left."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from echo.progress import bar
    from echo.train.bare import fit
    from echo.train.data import collate_lm
    from echo.train.objectives import sft_loss
    from echo.train.tokenizer import train_bpe

    started = time.monotonic()
    texts = corpus_texts(corpus, max_files, seed)
    extra = list(extra_texts or [])
    tok = train_bpe(iter(texts + extra), vocab_size, DEFAULT_FIM)
    cfg_fields = {k: v for k, v in model_config.items() if k not in ("model_type", "vocab_size")}
    cfg = AutoConfig.for_model(  # no dropout: a short pretraining of a tiny model underfits
        str(model_config.get("model_type", "gpt2")),
        vocab_size=len(tok),
        bos_token_id=tok.eos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        **{"resid_pdrop": 0.0, "embd_pdrop": 0.0, "attn_pdrop": 0.0, **cfg_fields},
    )
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(cfg)
    max_len = int(getattr(cfg, "n_positions", 0) or getattr(cfg, "max_position_embeddings", 512))
    rng = random.Random(f"static-data|{seed}")
    stream = _batches(texts, extra, extra_share, tok, rng, batch_size, max_len, prefix_chars, suffix_chars, fim_mode)
    pad = int(tok.pad_token_id)

    def lm_loss(m: Any, batch: dict[str, Any]) -> tuple[Any, dict[str, float]]:
        loss, _ = sft_loss(m, batch, use_weights=False)  # token-mean NLL of every token
        return loss, {"loss": float(loss.detach())}

    with bar("static pretraining", steps, "steps", quiet=not progress) as status:

        def on_step(step: int, stats: dict[str, float]) -> None:
            status.update(1)
            if step % 10 == 0:
                status.set_postfix(loss=f"{stats['loss']:.3f}", refresh=False)

        run = fit(
            model, (collate_lm(rows, pad) for rows in stream), lm_loss, steps=steps, lr=lr,
            weight_decay=0.01, warmup_steps=20, lr_schedule="linear", min_lr_ratio=0.1,
            clip_grad=1.0, on_step=on_step,
        )  # fmt: skip
    losses, tokens = run.losses, run.tokens
    if log is not None:
        tail = losses[-50:]
        log(f"static pretraining: {steps} steps in {run.seconds:.0f} s, loss {sum(tail) / max(len(tail), 1):.3f}")
    model.eval()
    path = Path(out)
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path)
    tok.save_pretrained(path)
    res = StaticResult(
        str(path), len(texts) + len(extra), steps, tokens, time.monotonic() - started, losses,
        sum(p.numel() for p in model.parameters()),
    )  # fmt: skip
    (path / "static_result.json").write_text(
        json.dumps({k: v for k, v in res.__dict__.items() if k != "losses"}, indent=2), encoding="utf-8"
    )
    return res
