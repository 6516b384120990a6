"""Acceptance per model, from ``gold/acceptance_metrics``: the one implementation that the
loop, its report, the notebooks and the demo share.

The gold table (written by ``track``) holds the counts per model x language x day; this
module only sums them per model and derives the rates, so every reader reports the same
numbers. Pure Python: rows come as a column dict (``pyarrow.Table.to_pydict()``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

Z95 = 1.959963984540054

#: Counter columns of gold/acceptance_metrics summed per model.
SUM_COLUMNS = (
    "shown", "accepted", "kept", "refined", "rewritten", "deleted", "replay_gap",
    "accepted_chars", "retained_chars",
)  # fmt: skip

#: The name of the model group when a suggestion had no model_id.
NO_MODEL = "(none)"


def wilson(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval of a binomial proportion (0, 0 when n is 0)."""
    if n <= 0:
        return 0.0, 0.0
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def acceptance_by_model(gold: Mapping[Any, Sequence[Any]]) -> dict[str, dict[str, Any]]:
    """Per model: the summed counters, ``acceptance`` (accepted / shown) with its 95%
    Wilson interval ``ci95``, ``char_retention`` (retained / accepted chars) and
    ``kept_unchanged_share`` (kept / accepted); rates are None where undefined."""
    sums: dict[str, dict[str, int]] = {}
    for i, model in enumerate(gold["model_id"]):
        s = sums.setdefault(NO_MODEL if model is None else str(model), dict.fromkeys(SUM_COLUMNS, 0))
        for c in SUM_COLUMNS:
            s[c] += int(gold[c][i] or 0)
    out: dict[str, dict[str, Any]] = {}
    for model, s in sorted(sums.items()):
        out[model] = {
            **s,
            "acceptance": s["accepted"] / s["shown"] if s["shown"] else None,
            "ci95": list(wilson(s["accepted"], s["shown"])),
            "char_retention": s["retained_chars"] / s["accepted_chars"] if s["accepted_chars"] else None,
            "kept_unchanged_share": s["kept"] / s["accepted"] if s["accepted"] else None,
        }
    return out
