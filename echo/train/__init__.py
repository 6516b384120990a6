"""Fine-tuning on the shards: Ray Train drives the workers, DeepSpeed optimizes.

Public API (what the experience loop calls)::

    from echo.train import TrainConfig, train, evaluate
    result = train(TrainConfig(shards=..., model=..., out=...))   # hooks: before_step=, after_step=
    report = evaluate(result.model_path, shards=..., split="val")

Importing this package is cheap; torch, ray and deepspeed are imported inside the
functions that need them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from echo.train.config import TrainConfig

if TYPE_CHECKING:
    from echo.train.trainer import TrainResult

__all__ = ["TrainConfig", "TrainResult", "evaluate", "train"]


def train(config: TrainConfig, **hooks: Any) -> TrainResult:
    """:func:`echo.train.trainer.train` (hooks: ``before_step``, ``after_step``)."""
    from echo.train.trainer import train as _train

    return _train(config, **hooks)


def evaluate(*args: Any, **kwargs: Any) -> dict[str, Any]:
    from echo.train.evaluate import evaluate as _evaluate

    return _evaluate(*args, **kwargs)
