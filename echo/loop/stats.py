"""Numbers of the report, from the evaluation lake's Delta tables (read through echo.lake).

Acceptance, its 95% Wilson interval, char retention and the share of accepted
suggestions kept unchanged come from gold/acceptance_metrics; the outcome mix from
silver/suggestions.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from echo.lake import readers as lake_readers
from echo.lake.tables import ACCEPTANCE_METRICS, REFINEMENT_PAIRS, SUGGESTIONS
from echo.metrics import NO_MODEL, Z95, acceptance_by_model, wilson

__all__ = ["OUTCOMES", "Z95", "intervals_overlap", "model_metrics", "pairs_harvested", "wilson"]

OUTCOMES = ("kept", "refined", "rewritten", "deleted", "replay_gap", "rejected", "ignored")


def model_metrics(lake: Path) -> dict[str, dict[str, Any]]:
    """Per model_id: shown, accepted, acceptance + 95% CI, char retention, kept share
    (echo.metrics, from gold/acceptance_metrics), and the outcome mix (silver/suggestions)."""
    per_model = acceptance_by_model(lake_readers.read_arrow(str(lake), ACCEPTANCE_METRICS).to_pydict())
    sugg = lake_readers.read_arrow(str(lake), SUGGESTIONS, ["model_id", "outcome"]).to_pydict()
    mix: dict[str, dict[str, int]] = {}
    for model, outcome in zip(sugg["model_id"], sugg["outcome"], strict=True):
        m = mix.setdefault(NO_MODEL if model is None else str(model), dict.fromkeys(OUTCOMES, 0))
        m[str(outcome)] = m.get(str(outcome), 0) + 1
    out: dict[str, dict[str, Any]] = {}
    for model, s in per_model.items():
        out[model] = {
            **s,
            "acceptance": s["acceptance"] or 0.0,
            "char_retention": s["char_retention"] or 0.0,
            "kept_unchanged_share": s["kept_unchanged_share"] or 0.0,
            "outcome_mix": mix.get(model, {}),
        }
    return out


def pairs_harvested(lake: Path) -> dict[str, int]:
    t = lake_readers.read_arrow(str(lake), REFINEMENT_PAIRS, ["split", "outcome"]).to_pydict()
    out: dict[str, int] = {"total": len(t["split"])}
    for key in ("split", "outcome"):
        for v in t[key]:
            out[f"{key}:{v}"] = out.get(f"{key}:{v}", 0) + 1
    return out


def intervals_overlap(a: list[float], b: list[float]) -> bool:
    return not (a[1] < b[0] or b[1] < a[0])
