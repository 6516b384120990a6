"""Telemetry simulator: users writing real code with a completion model, as contract events.

Public API::

    from echo.simulate import SimConfig, FaultConfig, simulate
    result = simulate(SimConfig(users=5, days=1, seed=1), out="sim-out")
    result.batch_dirs, result.truth_path, result.summary

Nothing here imports the pipeline (``echo.stages``/``echo.jobs``) or torch; the
transformers proposer imports torch when it loads its model.
"""

from __future__ import annotations

from echo.simulate.api import SimResult, format_stats, simulate
from echo.simulate.config import FAULT_PRESETS, FaultConfig, SimConfig
from echo.simulate.corpus import Corpus
from echo.simulate.proposers import NoisyOracleProposer, Proposer, TransformersProposer

__all__ = [
    "FAULT_PRESETS",
    "Corpus",
    "FaultConfig",
    "NoisyOracleProposer",
    "Proposer",
    "SimConfig",
    "SimResult",
    "TransformersProposer",
    "format_stats",
    "simulate",
]
