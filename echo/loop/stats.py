"""Numbers of the report, computed from the evaluation lake's Delta tables (deltalake).

Acceptance, its 95% Wilson interval, char retention and the share of accepted
suggestions kept unchanged come from gold/acceptance_metrics; the outcome mix from
silver/suggestions.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

Z95 = 1.959963984540054
OUTCOMES = ("kept", "refined", "rewritten", "deleted", "replay_gap", "rejected", "ignored")


def wilson(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval of a binomial proportion (0, 0 when n is 0)."""
    if n <= 0:
        return 0.0, 0.0
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def table_version(path: Path) -> int:
    from deltalake import DeltaTable

    return int(DeltaTable(str(path)).version())


def model_metrics(lake: Path) -> dict[str, dict[str, Any]]:
    """Per model_id: shown, accepted, acceptance + 95% CI, char retention, kept share,
    outcome counts."""
    from deltalake import DeltaTable

    gold = DeltaTable(str(lake / "gold" / "acceptance_metrics")).to_pyarrow_table().to_pydict()
    cols = ("shown", "accepted", "kept", "refined", "rewritten", "deleted", "replay_gap",
            "accepted_chars", "retained_chars")  # fmt: skip
    sums: dict[str, dict[str, int]] = {}
    for i, model in enumerate(gold["model_id"]):
        s = sums.setdefault(str(model), dict.fromkeys(cols, 0))
        for c in cols:
            s[c] += int(gold[c][i] or 0)
    sugg = DeltaTable(str(lake / "silver" / "suggestions")).to_pyarrow_table(
        columns=["model_id", "outcome"]
    ).to_pydict()
    mix: dict[str, dict[str, int]] = {}
    for model, outcome in zip(sugg["model_id"], sugg["outcome"], strict=True):
        m = mix.setdefault(str(model), dict.fromkeys(OUTCOMES, 0))
        m[str(outcome)] = m.get(str(outcome), 0) + 1
    out: dict[str, dict[str, Any]] = {}
    for model, s in sorted(sums.items()):
        lo, hi = wilson(s["accepted"], s["shown"])
        out[model] = {
            **s,
            "acceptance": s["accepted"] / s["shown"] if s["shown"] else 0.0,
            "ci95": [lo, hi],
            "char_retention": s["retained_chars"] / s["accepted_chars"] if s["accepted_chars"] else 0.0,
            "kept_unchanged_share": s["kept"] / s["accepted"] if s["accepted"] else 0.0,
            "outcome_mix": mix.get(model, {}),
        }
    return out


def pairs_harvested(lake: Path) -> dict[str, int]:
    from deltalake import DeltaTable

    t = DeltaTable(str(lake / "gold" / "refinement_pairs")).to_pyarrow_table(columns=["split", "outcome"]).to_pydict()
    out: dict[str, int] = {"total": len(t["split"])}
    for key in ("split", "outcome"):
        for v in t[key]:
            out[f"{key}:{v}"] = out.get(f"{key}:{v}", 0) + 1
    return out


def intervals_overlap(a: list[float], b: list[float]) -> bool:
    return not (a[1] < b[0] or b[1] < a[0])
