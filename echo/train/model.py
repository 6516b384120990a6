"""Resolve ``--model`` and build the model on a worker.

``--model`` is one of:

* a JSON/YAML file: a model config (``model_type`` plus its fields, e.g. ``llama`` with
  2 layers); the model is built from it with a seeded init and a BPE tokenizer is
  trained on the shards (``vocab_size`` in the file is the tokenizer's target size);
* a local Hugging Face model directory (``config.json`` + weights);
* a hub id that is already in the local cache (``local_files_only``: never downloaded).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from echo.errors import EchoError

DEFAULT_VOCAB = 1024


class ModelError(EchoError):
    """``--model`` is not usable."""


@dataclass(frozen=True)
class ModelSpec:
    kind: str  # "config" | "path" | "hub"
    source: str
    config: dict[str, Any] = field(default_factory=dict)  # kind == "config": model config fields

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def resolve_model_spec(model: str) -> ModelSpec:
    """Classify ``--model`` on the driver, before any worker starts (one-line errors)."""
    p = Path(model)
    if p.suffix.lower() in (".json", ".yaml", ".yml"):
        if not p.is_file():
            raise ModelError(f"model config file not found: {model}")
        try:
            text = p.read_text(encoding="utf-8")
            data = json.loads(text) if p.suffix.lower() == ".json" else yaml.safe_load(text)
        except (ValueError, yaml.YAMLError) as exc:
            raise ModelError(
                f"model config {model} is not valid: {str(exc).splitlines()[0]}"
            ) from None
        if not isinstance(data, dict) or "model_type" not in data:
            raise ModelError(
                f"model config {model} must be a mapping with a 'model_type' (e.g. llama)"
            )
        from transformers import AutoConfig

        fields = {k: v for k, v in data.items() if k != "model_type"}
        try:
            AutoConfig.for_model(str(data["model_type"]), **fields)
        except (ValueError, TypeError, KeyError) as exc:
            raise ModelError(f"model config {model}: {str(exc).splitlines()[0]}") from None
        return ModelSpec("config", str(p.resolve()), dict(data))
    if p.is_dir():
        if not (p / "config.json").is_file():
            raise ModelError(
                f"{model} is a directory but not a Hugging Face model (no config.json)"
            )
        return ModelSpec("path", str(p.resolve()))
    if p.exists() or model.startswith((".", "/", "~")) or model.count("/") > 1 or not model:
        raise ModelError(
            f"model not found: {model} (a model directory, a cached hub id or a config file)"
        )
    from transformers import AutoConfig

    try:
        AutoConfig.from_pretrained(model, local_files_only=True)
    except (OSError, ValueError):
        raise ModelError(
            f"model {model!r} is neither a local path, a model config file nor a hub id in the "
            "local cache (downloads are disabled)"
        ) from None
    return ModelSpec("hub", model)


def build_tokenizer(
    spec: ModelSpec, texts: Callable[[], Iterable[str]], fim: dict[str, str]
) -> Any:
    """The run's tokenizer: the model's own (+FIM/pad tokens) or a BPE trained on ``texts()``."""
    from echo.train.tokenizer import prepare_pretrained, train_bpe

    if spec.kind == "config":
        return train_bpe(texts(), int(spec.config.get("vocab_size", DEFAULT_VOCAB)), fim)
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(spec.source, local_files_only=True)
    except (OSError, ValueError) as exc:
        raise ModelError(
            f"cannot load the tokenizer of {spec.source}: {str(exc).splitlines()[0]}"
        ) from None
    return prepare_pretrained(tok, fim)[0]


def build_model(
    spec: dict[str, Any], tokenizer_info: dict[str, Any], seed: int, dtype: Any = None
) -> Any:
    """Instantiate the causal LM (on a worker, in the bare loop or in tests).

    ``spec`` is :meth:`ModelSpec.to_dict`; ``tokenizer_info`` has ``vocab_size``,
    ``pad_token_id``, ``eos_token_id``. Config-built models get the same seeded init on
    every rank.
    """
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    ids = {k: tokenizer_info[k] for k in ("pad_token_id", "eos_token_id")}
    if spec["kind"] == "config":
        fields = {k: v for k, v in spec["config"].items() if k not in ("model_type", "vocab_size")}
        fields.setdefault("tie_word_embeddings", True)
        cfg = AutoConfig.for_model(
            spec["config"]["model_type"],
            vocab_size=tokenizer_info["vocab_size"],
            bos_token_id=tokenizer_info["eos_token_id"],
            **ids,
            **fields,
        )
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(cfg)
        if dtype is not None:
            model = model.to(dtype)
        return model
    kwargs: dict[str, Any] = {"local_files_only": True}
    if dtype is not None:
        kwargs["dtype"] = dtype
    try:
        model = AutoModelForCausalLM.from_pretrained(spec["source"], **kwargs)
    except (OSError, ValueError) as exc:
        raise ModelError(
            f"cannot load model {spec['source']}: {str(exc).splitlines()[0]}"
        ) from None
    embeddings: Any = model.get_input_embeddings()
    if embeddings.weight.shape[0] < tokenizer_info["vocab_size"]:
        torch.manual_seed(seed)  # the new rows are sampled: the same on every rank and rebuild
        model.resize_token_embeddings(tokenizer_info["vocab_size"])
    if model.config.pad_token_id is None:
        model.config.pad_token_id = ids["pad_token_id"]
    return model


def tokenizer_info(tok: Any) -> dict[str, Any]:
    return {
        "vocab_size": len(tok),
        "pad_token_id": tok.pad_token_id,
        "eos_token_id": tok.eos_token_id,
    }


def count_params(model: Any) -> int:
    return sum(p.numel() for p in model.parameters())
