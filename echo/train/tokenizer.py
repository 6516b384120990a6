"""Tokenizers: the base model's own, or a byte-level BPE trained on the shard text.

Either way the FIM sentinels of the manifest are single special tokens (the prompts
embed them as text), there is a pad token and an end token, and the result is a
``PreTrainedTokenizerFast`` that plain ``transformers`` loads back.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

PAD = "<pad>"
EOS = "<|endoftext|>"
DEFAULT_FIM = {"prefix": "<fim_prefix>", "suffix": "<fim_suffix>", "middle": "<fim_middle>"}


def fim_tokens(fim: dict[str, str] | None) -> list[str]:
    f = {**DEFAULT_FIM, **(fim or {})}
    return [f["prefix"], f["suffix"], f["middle"]]


def train_bpe(texts: Iterable[str], vocab_size: int, fim: dict[str, str] | None) -> Any:
    """A byte-level BPE (whitespace kept: it is code) with pad/end/FIM special tokens."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    sentinels = fim_tokens(fim)
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=max(vocab_size, 256 + 3 + len(sentinels)),
        min_frequency=2,
        special_tokens=[PAD, EOS, *sentinels],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=EOS, eos_token=EOS, pad_token=PAD, unk_token=None
    )
    fast.add_special_tokens({"additional_special_tokens": sentinels})
    fast.model_max_length = 1 << 20
    return fast


def prepare_pretrained(tok: Any, fim: dict[str, str] | None) -> tuple[Any, int]:
    """Give a base model's tokenizer the FIM sentinels and a pad token.

    Returns the tokenizer and how many tokens were added (the model's embeddings must
    then grow to ``len(tok)``).
    """
    if tok.eos_token is None:
        added = tok.add_special_tokens({"eos_token": EOS})
    else:
        added = 0
    missing = [t for t in fim_tokens(fim) if t not in tok.get_vocab()]
    if missing:
        added += tok.add_special_tokens({"additional_special_tokens": missing})
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok, added


def encode(tok: Any, texts: Sequence[str]) -> list[list[int]]:
    """Token ids without BOS/EOS (prompts embed their sentinels; the end token is added
    by the data pipeline after the completion)."""
    if not texts:
        return []
    return [list(x) for x in tok(list(texts), add_special_tokens=False)["input_ids"]]
