"""LoRA (``peft``) and gradient checkpointing for a training run.

With ``--lora`` the causal LM is wrapped in a ``PeftModel`` before DeepSpeed sees it:
only the adapter weights are trainable (and have optimizer state); the base stays
frozen. The reference model of dpo/kto is then the same model with its adapters
switched off (:class:`AdapterOffReference`), so no second copy of the weights is kept.

At the end of a run :func:`export_lora` writes, from the full state dict (gathered from
the ZeRO-3 partitions, or the module's own under ZeRO-0/1/2):

* ``adapter/``: the adapter in peft's format (``adapter_config.json``,
  ``adapter_model.safetensors``) plus the tokenizer, loadable with
  ``PeftModel.from_pretrained(base, "adapter")``;
* ``hf/``: the merged model (adapters folded into the weights) in plain Hugging Face
  format, what ``evaluate`` and the loop read;
* ``base/`` (models built from a config file only, which exist nowhere else): the frozen
  base the adapter applies to.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from echo.errors import EchoError
from echo.train.config import TrainConfig

ADAPTER_DIR = "adapter"
BASE_DIR = "base"


class LoraError(EchoError):
    """The LoRA settings do not fit the model (one line)."""


def is_peft_model(model: Any) -> bool:
    try:
        from peft import PeftModel
    except ImportError:
        return False
    return isinstance(model, PeftModel)


def lora_config(cfg: TrainConfig) -> Any:
    from peft import LoraConfig, TaskType

    targets = list(cfg.lora_target_modules)
    return LoraConfig(
        task_type=TaskType.CAUSAL_LM,
        r=cfg.lora_r,
        lora_alpha=cfg.lora_alpha,
        lora_dropout=cfg.lora_dropout,
        target_modules="all-linear" if targets == ["all-linear"] else targets,
        bias="none",
    )


def enable_gradient_checkpointing(model: Any) -> None:
    """Non-reentrant activation checkpointing (works with frozen inputs, i.e. LoRA, and
    with ZeRO-3's parameter gathering); the KV cache is off while training."""
    kwargs = {"use_reentrant": False}
    if hasattr(model, "activation_checkpointing_enable"):  # transformers 5 (old name warns)
        model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:  # transformers 4.x
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
    model.config.use_cache = False


def prepare_model(model: Any, cfg: TrainConfig) -> Any:
    """The model a run trains: gradient checkpointing and LoRA as the settings ask."""
    if cfg.gradient_checkpointing:
        enable_gradient_checkpointing(model)
    if not cfg.lora:
        return model
    from peft import get_peft_model

    try:
        return get_peft_model(model, lora_config(cfg))
    except ValueError as exc:
        raise LoraError(
            f"LoRA cannot wrap this model: {str(exc).splitlines()[0]} (see --lora-target-modules)"
        ) from None


def trainable_params(model: Any) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


class AdapterOffReference:
    """The frozen reference of dpo/kto under LoRA: ``model`` (a DeepSpeed engine or the
    PeftModel itself) called with the adapters of ``peft_model`` disabled."""

    def __init__(self, model: Any, peft_model: Any = None) -> None:
        self.model = model
        self.peft_model = model if peft_model is None else peft_model

    def __call__(self, **kwargs: Any) -> Any:
        import torch

        with torch.no_grad(), self.peft_model.disable_adapter():
            return self.model(**kwargs)


def export_lora(
    state: dict[str, Any],
    rebuild: Callable[[], Any],
    cfg: TrainConfig,
    tokenizer: Any,
    directory: Path,
    *,
    save_base: bool,
) -> None:
    """Write ``adapter/``, ``hf/`` (merged) and, if ``save_base``, ``base/`` under
    ``directory`` from ``state``, the full state dict of the trained PeftModel.
    ``rebuild()`` returns a fresh base model of the same architecture (its weights are
    replaced by those of ``state``)."""
    from echo.train.checkpoint import HF_DIR

    model = prepare_model(rebuild(), cfg.replace(gradient_checkpointing=False))
    missing, unexpected = model.load_state_dict(state, strict=False)
    if unexpected or missing:
        raise LoraError(
            f"the trained LoRA state does not fit the rebuilt model (missing {list(missing)[:3]}, "
            f"unexpected {list(unexpected)[:3]})"
        )
    model.save_pretrained(directory / ADAPTER_DIR)
    tokenizer.save_pretrained(directory / ADAPTER_DIR)
    if save_base:
        base = rebuild()
        base.save_pretrained(directory / BASE_DIR)
        tokenizer.save_pretrained(directory / BASE_DIR)
    merged = model.merge_and_unload()
    merged.config.use_cache = True
    merged.save_pretrained(directory / HF_DIR)
    tokenizer.save_pretrained(directory / HF_DIR)


def point_adapter_at_base(adapter_dir: Path, base: str) -> None:
    """Record ``base`` (a directory or hub id) as the adapter's base model, so
    ``AutoPeftModelForCausalLM.from_pretrained(adapter_dir)`` finds it."""
    import json

    path = adapter_dir / "adapter_config.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    data["base_model_name_or_path"] = base
    path.write_text(json.dumps(data, indent=2, sort_keys=True), encoding="utf-8")
