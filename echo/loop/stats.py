"""Numbers of the report, from the evaluation lake's Delta tables (read through echo.lake).

Acceptance, its 95% Wilson interval, char retention and the share of accepted
suggestions kept unchanged come from gold/acceptance_metrics; the outcome mix from
silver/suggestions. Paired differences between arms (the same evaluation users replayed
with each model, docs/experiment.md) come from silver/suggestions per user, with a 95%
bootstrap interval over users.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from echo import contract
from echo.lake import readers as lake_readers
from echo.lake.tables import ACCEPTANCE_METRICS, REFINEMENT_PAIRS, SUGGESTIONS
from echo.metrics import NO_MODEL, Z95, acceptance_by_model, wilson

__all__ = [
    "OUTCOMES", "Z95", "model_metrics", "paired_difference", "pairs_harvested",
    "per_person", "wilson",
]  # fmt: skip

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


#: a person's counts in one arm: (accepted, shown)
Counts = tuple[int, int]


def person_of(user_id: str) -> str:
    """The cohort index of a paired evaluation user (``e1.a3-00007`` -> ``00007``)."""
    return user_id.rsplit("-", 1)[-1]


def per_person(lake: Path) -> dict[str, dict[str, Counts]]:
    """model_id -> cohort person -> (accepted, shown), from silver/suggestions with the
    definitions of gold/acceptance_metrics (shown: a shown event; accepted: an accepted
    outcome of the contract), so that a model's sums over people equal its gold row sums.
    Grouped in Arrow."""
    import pyarrow as pa
    import pyarrow.compute as pc

    t = lake_readers.read_arrow(str(lake), SUGGESTIONS, ["user_id", "model_id", "outcome", "shown_ts_ms"])
    t = t.filter(pc.is_valid(t["shown_ts_ms"]))
    person = pc.replace_substring_regex(t["user_id"], r"^.*-", "")  # as person_of
    grouped = (
        pa.table({
            "model_id": pc.fill_null(t["model_id"], NO_MODEL),
            "person": person,
            "accepted": pc.cast(pc.is_in(t["outcome"], pa.array(contract.ACCEPTED_OUTCOMES)), pa.int64()),
        })
        .group_by(["model_id", "person"])
        .aggregate([("accepted", "sum"), ("accepted", "count")])
        .to_pydict()
    )  # fmt: skip
    out: dict[str, dict[str, Counts]] = {}
    for model, who, acc, n in zip(grouped["model_id"], grouped["person"], grouped["accepted_sum"],
                                  grouped["accepted_count"], strict=True):  # fmt: skip
        out.setdefault(str(model), {})[str(who)] = (int(acc), int(n))
    return out


def paired_difference(
    a: Mapping[str, Counts], b: Mapping[str, Counts], *, resamples: int = 2000, seed: int = 0
) -> dict[str, Any]:
    """Acceptance of ``a`` minus that of ``b`` (ratio of sums over the same people) with a
    95% percentile bootstrap interval: people are drawn with replacement and both arms'
    counts of a drawn person go together, so what the people share (skill, attention,
    files) cancels in the difference."""
    import numpy as np

    people = sorted(set(a) | set(b))
    if not people:
        return {"diff": 0.0, "ci95": [0.0, 0.0], "people": 0, "resamples": 0}
    m = np.array([[*a.get(p, (0, 0)), *b.get(p, (0, 0))] for p in people], dtype=np.float64)

    def diff(sums: Any) -> Any:
        with np.errstate(divide="ignore", invalid="ignore"):
            ra = np.where(sums[..., 1] > 0, sums[..., 0] / sums[..., 1], 0.0)
            rb = np.where(sums[..., 3] > 0, sums[..., 2] / sums[..., 3], 0.0)
        return ra - rb

    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(people), size=(resamples, len(people)))
    boot = diff(m[draws].sum(axis=1))
    lo, hi = np.percentile(boot, [2.5, 97.5])
    return {
        "diff": float(diff(m.sum(axis=0))),
        "ci95": [float(lo), float(hi)],
        "people": len(people),
        "resamples": resamples,
    }
