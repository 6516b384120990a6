"""Acceptance per model from gold/acceptance_metrics rows (echo.metrics), and the
contract module being free of Spark."""

from __future__ import annotations

import subprocess
import sys

from echo.metrics import SUM_COLUMNS, acceptance_by_model, wilson


def _gold(*rows: dict[str, object]) -> dict[str, list[object]]:
    cols = ("model_id", *SUM_COLUMNS)
    return {c: [r.get(c, 0) for r in rows] for c in cols}


def test_acceptance_sums_every_language_and_day_of_a_model():
    per = acceptance_by_model(_gold(
        {"model_id": "m1", "shown": 10, "accepted": 4, "kept": 1, "refined": 2, "accepted_chars": 100, "retained_chars": 80},
        {"model_id": "m1", "shown": 30, "accepted": 6, "kept": 3, "accepted_chars": 100, "retained_chars": 20},
        {"model_id": "m2", "shown": 5, "accepted": 5, "kept": 5},
    ))  # fmt: skip
    assert per["m1"]["shown"] == 40 and per["m1"]["accepted"] == 10
    assert per["m1"]["acceptance"] == 0.25
    assert per["m1"]["char_retention"] == 0.5
    assert per["m1"]["kept_unchanged_share"] == 0.4
    assert per["m2"]["acceptance"] == 1.0


def test_acceptance_interval_is_the_wilson_interval_of_the_sums():
    per = acceptance_by_model(_gold({"model_id": "m", "shown": 50, "accepted": 10}))
    assert per["m"]["ci95"] == list(wilson(10, 50))
    lo, hi = per["m"]["ci95"]
    assert lo < 0.2 < hi


def test_rates_are_none_where_nothing_was_shown_or_accepted():
    per = acceptance_by_model(_gold({"model_id": "m", "shown": 0, "accepted": 0}))
    assert per["m"]["acceptance"] is None
    assert per["m"]["char_retention"] is None
    assert per["m"]["kept_unchanged_share"] is None


def test_a_null_model_is_its_own_group():
    per = acceptance_by_model(_gold({"model_id": None, "shown": 2, "accepted": 1}, {"model_id": "m", "shown": 1}))
    assert set(per) == {"(none)", "m"}


def test_the_contract_module_imports_without_spark():
    code = "import sys, echo.contract, echo.metrics; assert 'pyspark' not in sys.modules, 'pyspark imported'"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True).returncode == 0
