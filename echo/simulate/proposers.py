"""Proposal models behind one small batched interface.

* :class:`NoisyOracleProposer` knows the code the user is about to write and returns it
  exact, truncated, corrupted or replaced by a wrong line, at configurable rates.
* :class:`TransformersProposer` generates real proposals with a local causal LM
  (fill-in-the-middle prompt); torch and transformers are imported only when it loads.

The simulator passes the true continuation to proposers whose ``uses_truth`` is True
(keyword ``truths``); any other object with ``model_id`` and ``propose_batch`` works.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from echo.errors import ConfigError

Context = tuple[str, str]  # (prefix, suffix)


@runtime_checkable
class Proposer(Protocol):
    """A completion model: for each (prefix, suffix) the text proposed at the cursor."""

    model_id: str

    def propose_batch(self, contexts: Sequence[Context]) -> list[str]: ...


def propose(proposer: Any, prefix: str, suffix: str = "", *, truth: str | None = None) -> str:
    """One proposal: ``propose(model, prefix, suffix) -> text`` over any batched proposer
    (``truth``: the true continuation, for proposers whose ``uses_truth`` is True)."""
    if getattr(proposer, "uses_truth", False):
        if truth is None:
            raise ConfigError(f"{proposer.model_id}: this proposer needs the true continuation (truth=...)")
        return str(proposer.propose_batch([(prefix, suffix)], truths=[truth])[0])
    return str(proposer.propose_batch([(prefix, suffix)])[0])


def cut_lines(text: str, max_lines: int) -> str:
    """``text`` cut to at most ``max_lines`` lines (the last line without its newline)."""
    if max_lines <= 0:
        return text
    parts = text.split("\n")
    if len(parts) <= max_lines:
        return text
    return "\n".join(parts[:max_lines])


def natural_continuation(truth: str, rng: random.Random, max_lines: int = 3) -> str:
    """What a completion model would aim to propose: the rest of the current line, or
    (at the start of a line) one to ``max_lines`` whole lines."""
    if not truth:
        return ""
    nl = truth.find("\n")
    if nl > 0 and truth[:nl].strip():
        return truth[:nl]
    n = 1 + min(max_lines - 1, int(rng.expovariate(1.2)))
    lines = truth.split("\n")
    start = 1 if nl == 0 else 0
    block = lines[start : start + n]
    cont = ("\n" if nl == 0 else "") + "\n".join(block)
    return cont if cont.strip() else ""


_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_WORD_END = re.compile(r"\w+|\W")


def _corrupt(text: str, prefix: str, rng: random.Random) -> str:
    """One or two plausible mistakes: a wrong identifier, a typo, a changed literal."""
    out = text
    for _ in range(1 + (rng.random() < 0.3)):
        idents = list(_IDENT.finditer(out))
        choice = rng.random()
        if idents and choice < 0.55:
            m = idents[rng.randrange(len(idents))]
            pool = [w for w in _IDENT.findall(prefix[-600:]) if w != m.group()] or [
                "value",
                "result",
                "data",
            ]
            out = out[: m.start()] + pool[rng.randrange(len(pool))] + out[m.end() :]
        elif len(out) >= 2 and choice < 0.85:
            i = rng.randrange(len(out) - 1)
            if rng.random() < 0.5:
                out = out[:i] + out[i + 1] + out[i] + out[i + 2 :]
            else:
                out = out[:i] + out[i + 1 :]
        else:
            out = out + rng.choice([")", ":", " or None", ", 0", "()"])
    return out


def _truncate(text: str, rng: random.Random) -> str:
    cuts = [m.end() for m in _WORD_END.finditer(text) if m.end() < len(text)]
    if not cuts:
        return text
    return text[: cuts[rng.randrange(len(cuts))]]


def _wrong(prefix: str, rng: random.Random) -> str:
    lines = [ln for ln in prefix[-2000:].split("\n") if ln.strip()]
    if not lines:
        return "pass"
    return lines[rng.randrange(len(lines))].strip()


@dataclass
class NoisyOracleProposer:
    """Proposes the true continuation, spoiled at configurable rates.

    ``exact + truncated + corrupted + wrong`` are weights (normalised). The randomness
    of each proposal is a function of the seed, the model id and the context only, so
    proposals do not depend on the order of calls.
    """

    model_id: str
    exact: float = 0.5
    truncated: float = 0.2
    corrupted: float = 0.18
    wrong: float = 0.12
    max_lines: int = 3
    seed: int = 0
    uses_truth: bool = True

    @classmethod
    def with_quality(cls, model_id: str, quality: float, *, seed: int = 0) -> NoisyOracleProposer:
        """``quality`` = share of exact or truncated proposals; the rest is 70% corrupted, 30% wrong."""
        q = min(max(quality, 0.0), 1.0)
        return cls(
            model_id,
            exact=0.7 * q,
            truncated=0.3 * q,
            corrupted=0.7 * (1 - q),
            wrong=0.3 * (1 - q),
            seed=seed,
        )

    def propose_batch(
        self, contexts: Sequence[Context], *, truths: Sequence[str] | None = None
    ) -> list[str]:
        if truths is None:
            raise ConfigError(
                f"{self.model_id}: the noisy oracle needs the true continuations (truths=...)"
            )
        total = self.exact + self.truncated + self.corrupted + self.wrong
        if total <= 0:
            raise ConfigError(f"{self.model_id}: oracle rates must not all be 0")
        out: list[str] = []
        for (prefix, _suffix), truth in zip(contexts, truths, strict=True):
            rng = random.Random(
                f"{self.seed}|{self.model_id}|{prefix[-48:]}|{truth[:48]}|{len(prefix)}"
            )
            cont = natural_continuation(truth, rng, self.max_lines)
            x = rng.random() * total
            if not cont or x >= self.exact + self.truncated + self.corrupted:
                out.append(_wrong(prefix, rng))
            elif x < self.exact:
                out.append(cont)
            elif x < self.exact + self.truncated:
                out.append(_truncate(cont, rng))
            else:
                out.append(_corrupt(cont, prefix, rng))
        return out


class TransformersProposer:
    """Greedy fill-in-the-middle proposals from a local causal LM (``model_path``).

    The prompt is ``fim_prefix + prefix + fim_suffix + suffix + fim_middle`` (set
    ``fim=False`` for a plain left-to-right prompt ``prefix``, the shards' ``--fim-mode lm``). The prefix keeps its last
    ``max_prompt_tokens`` tokens, the suffix its first ``max_suffix_tokens``; with
    ``max_prefix_chars`` / ``max_suffix_chars`` the context is first cut to that many
    characters, so a model sees prompts of the length it was trained on (a GPT-2 has
    untrained position embeddings past its training lengths). Generation is
    greedy, at most ``max_new_tokens``, cut at ``max_lines`` lines. Nothing is downloaded:
    the path must hold the model and its tokenizer.
    """

    uses_truth = False

    def __init__(
        self,
        model_path: str,
        model_id: str | None = None,
        *,
        fim: bool = True,
        fim_prefix: str = "<fim_prefix>",
        fim_suffix: str = "<fim_suffix>",
        fim_middle: str = "<fim_middle>",
        max_new_tokens: int = 32,
        max_lines: int = 1,
        max_prompt_tokens: int = 384,
        max_suffix_tokens: int = 128,
        batch_size: int = 8,
        device: str = "cpu",
        max_prefix_chars: int | None = None,
        max_suffix_chars: int | None = None,
    ) -> None:
        self.model_path = str(model_path)
        self.model_id = model_id or self.model_path.rstrip("/").split("/")[-1]
        self.fim = fim
        self.fim_prefix, self.fim_suffix, self.fim_middle = fim_prefix, fim_suffix, fim_middle
        self.max_new_tokens = max_new_tokens
        self.max_lines = max_lines
        self.max_prompt_tokens = max_prompt_tokens
        self.max_suffix_tokens = max_suffix_tokens
        self.batch_size = batch_size
        self.device = device
        self.max_prefix_chars = max_prefix_chars
        self.max_suffix_chars = max_suffix_chars
        self._model: Any = None
        self._tok: Any = None

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_model"] = None
        state["_tok"] = None
        return state

    def _load(self) -> None:
        if self._model is not None:
            return
        try:
            import torch
            from transformers import AutoModelForCausalLM, AutoTokenizer
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise ConfigError(
                f"the transformers proposer needs the 'train' extra ({exc.name})"
            ) from None
        try:
            self._tok = AutoTokenizer.from_pretrained(self.model_path, local_files_only=True)
            model: Any = AutoModelForCausalLM.from_pretrained(self.model_path, local_files_only=True)
        except OSError as exc:
            raise ConfigError(f"cannot load a local model from {self.model_path}: {exc}") from None
        model.to(self.device)
        model.eval()
        self._model = model
        self._torch = torch

    def _special_ids(self, token: str) -> list[int]:
        tok = self._tok
        tid = tok.convert_tokens_to_ids(token)
        if isinstance(tid, int) and tid != tok.unk_token_id and tid is not None:
            return [tid]
        return list(tok.encode(token, add_special_tokens=False))

    def _prompt_ids(self, prefix: str, suffix: str) -> list[int]:
        tok = self._tok
        if self.max_prefix_chars is not None:
            prefix = prefix[len(prefix) - min(len(prefix), self.max_prefix_chars) :]
        if self.max_suffix_chars is not None:
            suffix = suffix[: self.max_suffix_chars]
        pre = tok.encode(prefix, add_special_tokens=False)[-self.max_prompt_tokens :] if prefix else []
        if not self.fim:
            pre = pre[-max(1, self._context_limit() - self.max_new_tokens) :]
            return pre or ([tok.bos_token_id] if tok.bos_token_id is not None else [0])
        suf = tok.encode(suffix, add_special_tokens=False)[: self.max_suffix_tokens] if suffix else []
        fp, fs, fm = (self._special_ids(t) for t in (self.fim_prefix, self.fim_suffix, self.fim_middle))
        room = self._context_limit() - self.max_new_tokens - len(fp) - len(fs) - len(fm)
        if len(pre) + len(suf) > room:  # the model's context is the limit: shorten the suffix first
            suf = suf[: max(0, min(len(suf), room // 4, room - len(pre)))]
            keep = max(0, room - len(suf))
            pre = pre[len(pre) - keep :] if keep else []
        return fp + pre + fs + suf + fm

    def _context_limit(self) -> int:
        cfg = self._model.config
        for name in ("n_positions", "max_position_embeddings", "n_ctx"):
            value = getattr(cfg, name, None)
            if isinstance(value, int) and value > 0:
                return value
        return 1 << 30

    def propose_batch(self, contexts: Sequence[Context]) -> list[str]:
        self._load()
        torch = self._torch
        tok, model = self._tok, self._model
        pad = tok.pad_token_id if tok.pad_token_id is not None else (tok.eos_token_id or 0)
        stops = [s for s in (self.fim_prefix, self.fim_suffix, self.fim_middle, tok.eos_token) if s]
        out: list[str] = []
        for start in range(0, len(contexts), self.batch_size):
            chunk = contexts[start : start + self.batch_size]
            ids = [self._prompt_ids(p, s) for p, s in chunk]
            width = max(len(x) for x in ids)
            input_ids = torch.tensor(
                [[pad] * (width - len(x)) + x for x in ids], device=self.device
            )
            mask = torch.tensor(
                [[0] * (width - len(x)) + [1] * len(x) for x in ids], device=self.device
            )
            with torch.no_grad():
                gen = model.generate(
                    input_ids=input_ids,
                    attention_mask=mask,
                    max_new_tokens=self.max_new_tokens,
                    do_sample=False,
                    pad_token_id=pad,
                    eos_token_id=tok.eos_token_id,
                )
            for row in gen[:, width:].tolist():
                text = tok.decode(row, skip_special_tokens=True)
                for s in stops:
                    cut = text.find(s)
                    if cut >= 0:
                        text = text[:cut]
                out.append(cut_lines(text, self.max_lines))
        return out


def default_proposers(
    models: Sequence[str], quality: Sequence[float], seed: int
) -> list[NoisyOracleProposer]:
    qs = list(quality) if len(quality) == len(models) else [quality[0]] * len(models)
    return [
        NoisyOracleProposer.with_quality(m, q, seed=seed) for m, q in zip(models, qs, strict=True)
    ]
