"""The experience loop (``python -m echo loop``): static baseline, deploy to simulated
users, harvest their refinements through the pipeline, fine-tune, measure on fresh users.
Heavy imports (torch, ray, pyspark) happen inside the functions."""

from __future__ import annotations

from echo.loop.config import LoopConfig, tiny

__all__ = ["LoopConfig", "tiny"]
