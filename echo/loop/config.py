"""Settings of the experience loop (``python -m echo loop``), one frozen dataclass.

Defaults are the demo size tuned for a 2-core CPU machine (see docs/experiment.md);
``tiny()`` is the size the test runs.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, NamedTuple

from echo.config import Validated, setting
from echo.errors import ConfigError


class Arm(NamedTuple):
    """An arm besides Echo: what it is, the shards it trains on (``ablation_shards``
    target; None: Echo's own) and its objective (None: not trained), and the signal whose
    harvested rows it needs (None: Echo's pairs suffice)."""

    help: str
    shards: str | None
    objective: str | None
    needs: str | None


#: arms besides Echo, all from the same telemetry and starting model (docs/experiment.md)
ARMS: dict[str, Arm] = {
    "raw-accepted": Arm("SFT on the text as accepted (the raw logs)", "accepted", "sft", None),
    "raw-shown": Arm("SFT on the proposals as shown", "shown", "sft", None),
    "none": Arm("no fine-tuning: the round's starting model", None, None, None),
    "echo+typed": Arm("SFT on the refined final texts plus what users typed instead of a proposal",
                      "typed", "sft", "typed"),
    "echo+kto": Arm("SFT on the refined final texts plus KTO on the unpaired feedback", None, "sft+kto", "kto"),
    "echo+dpo": Arm("SFT on the refined final texts plus DPO on refined and typed-instead preferences",
                    None, "sft+dpo", "pref"),
}  # fmt: skip
ABLATIONS = tuple(ARMS)


@dataclass(frozen=True)
class LoopConfig(Validated):
    """Static baseline, R rounds of deploy -> harvest -> retrain -> measure, ablations."""

    out: str = setting("", "output directory (corpus, models, lakes, report)")
    rounds: int = setting(1, "number of Echo rounds")
    seed: int = setting(0, "seed of the corpus, the models and the simulated users")
    # --- static baseline ---
    static_corpus: str = setting("", "static human data: a code directory (default: the Python stdlib)")
    static_files: int = setting(200, "corpus files the static model and its tokenizer learn from")
    static_public_files: int = setting(40, "public-style service modules in the static data (not the project's conventions)")
    static_public_share: float = setting(0.9, "share of pretraining samples drawn from the public-style modules")
    fim_mode: str = setting("lm", "prompt format of pretraining, proposals and shards: lm (left to right) or psm (FIM)",
                            choices=("lm", "psm"))  # fmt: skip
    vocab_size: int = setting(2048, "BPE vocabulary trained on the static corpus")
    n_layer: int = setting(2, "transformer layers of the tiny GPT-2")
    n_embd: int = setting(128, "hidden size of the tiny GPT-2")
    n_head: int = setting(4, "attention heads")
    n_positions: int = setting(512, "context length in tokens")
    static_steps: int = setting(500, "pretraining steps of the static model")
    static_batch: int = setting(8, "sequences per pretraining step")
    static_lr: float = setting(3e-3, "pretraining learning rate")
    prefix_chars: int = setting(600, "characters of prefix in prompts (pretraining and shards)")
    suffix_chars: int = setting(150, "characters of suffix in prompts (pretraining and shards)")
    # --- project and users ---
    project_files: int = setting(40, "modules of the synthetic project (a third is held out)")
    harvest_users: int = setting(32, "users per round whose telemetry trains the next model")
    eval_users: int = setting(36, "fresh held-out users per round who measure every model")
    days: int = setting(1, "simulated days per user")
    batches: int = setting(2, "delivery batches of the harvest telemetry")
    faults: str = setting("light", "transport faults of the simulated telemetry", choices=("none", "light", "heavy"))
    session_minutes: float = setting(8.0, "simulator: mean active minutes of a session (short: more users, bigger proposal batches)")
    sessions_per_day: float = setting(1.0, "simulator: sessions per user-day")
    attention: float = setting(0.4, "simulator: mean chance that a user reads a proposal")
    max_new_tokens: int = setting(24, "tokens a proposal may have (cut at one line)")
    # --- fine-tuning ---
    ablations: tuple[str, ...] = setting(
        ("raw-accepted", "echo+kto", "none"),
        "arms besides Echo: " + "; ".join(f"{k}: {v.help}" for k, v in ARMS.items()),
    )
    forecast: bool = setting(True, "also run the outcome forecaster (GraphSB) on each evaluation lake and report its "
                             "early forecast of refine and delete rates per arm next to the measured rates")
    forecast_epochs: int = setting(80, "training epochs of the forecaster at most")
    resamples: int = setting(2000, "bootstrap resamples (over evaluation users) of the paired intervals")
    train_steps: int = setting(60, "optimizer steps per fine-tuning run")
    train_lr: float = setting(1e-3, "fine-tuning learning rate")
    micro_batch_size: int = setting(8, "pairs per worker per step")
    num_workers: int = setting(1, "Ray Train workers")
    zero_stage: int = setting(2, "DeepSpeed ZeRO stage", choices=(0, 1, 2, 3))
    max_seq_len: int = setting(320, "tokens per training sequence")
    quiet: bool = setting(False, "no progress lines")

    def validate(self) -> None:
        if not self.out:
            raise ConfigError("--out DIR is required")
        if self.rounds < 1:
            raise ConfigError("--rounds must be >= 1")
        for name in ("harvest_users", "eval_users", "days", "batches", "static_steps", "train_steps", "resamples",
                     "forecast_epochs"):
            if getattr(self, name) < 1:
                raise ConfigError(f"setting {name} must be >= 1")
        bad = [a for a in self.ablations if a not in ABLATIONS]
        if not 0.0 <= self.static_public_share <= 1.0:
            raise ConfigError("--static-public-share must be between 0 and 1")
        if bad:
            raise ConfigError(f"unknown ablation(s) {', '.join(bad)}; choose from {', '.join(ABLATIONS)}")

    def to_dict(self) -> dict[str, Any]:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(self).items()}


def tiny(out: str, **changes: Any) -> LoopConfig:
    """The test size: one round, a tiny model, few users, few steps."""
    base = LoopConfig(
        out=out, rounds=1, static_files=30, static_public_files=20, vocab_size=512, n_layer=2, n_embd=64,
        n_head=2, n_positions=256, static_steps=400, static_batch=4, static_lr=4e-3, prefix_chars=300,
        suffix_chars=80, project_files=9, harvest_users=4, eval_users=3, session_minutes=5.0, attention=0.9,
        batches=2, train_steps=4, micro_batch_size=2, max_seq_len=200, max_new_tokens=6, forecast_epochs=20,
        quiet=True,
    )  # fmt: skip
    return dataclasses.replace(base, **changes)
