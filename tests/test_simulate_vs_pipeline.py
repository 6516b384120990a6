"""The simulator's ground truth against the PIPELINE's outcomes (silver/suggestions).

Without faults the truth must match on every suggestion; with faults (which the run
must really have injected), on every suggestion the faults did not touch
(``truth.touched`` is false).
"""

from __future__ import annotations

import math
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from deltalake import DeltaTable
from test_simulate_support import make_corpus

from echo.jobs import run
from echo.simulate import FaultConfig, SimConfig, simulate


def _compare(truth_rows: list[dict], pipeline: dict[str, dict], *, only_untouched: bool) -> int:
    n = 0
    for t in truth_rows:
        if only_untouched and t["touched"]:
            continue
        got = pipeline[t["suggestion_id"]]
        assert got["outcome"] == t["outcome"], t["suggestion_id"]
        assert got["final_text"] == t["final_text"], t["suggestion_id"]
        if t["edit_similarity"] is None:
            assert got["edit_similarity"] is None or math.isnan(got["edit_similarity"])
        else:
            assert got["edit_similarity"] == pytest.approx(t["edit_similarity"], abs=1e-9)
        n += 1
    return n


@pytest.mark.slow
@pytest.mark.parametrize("faults", ["none", "light"])
def test_pipeline_outcomes_equal_simulator_truth(spark: object, tmp_path: Path, faults: str) -> None:
    corpus = make_corpus(tmp_path / "corpus")
    cfg = SimConfig(users=3, days=1, seed=21, corpus=str(corpus), batches=2)
    result = simulate(cfg, FaultConfig(faults=faults), out=tmp_path / "sim")
    injected = sum(result.summary["faults"]["injected"].values())
    assert (injected > 0) == (faults != "none"), result.summary["faults"]["injected"]
    lake = str(tmp_path / "lake")
    assert run.main(["--events", *map(str, result.batch_dirs), "--lake", lake]) == 0
    df = DeltaTable(f"{lake}/silver/suggestions").to_pandas()
    df = df.astype(object).where(df.notna(), None)
    pipeline = {
        r["suggestion_id"]: r for r in df[["suggestion_id", "outcome", "final_text", "edit_similarity"]].to_dict("records")
    }
    truth = pq.read_table(result.truth_path).to_pylist()
    assert {t["suggestion_id"] for t in truth} <= set(pipeline)
    n = _compare(truth, pipeline, only_untouched=faults != "none")
    assert n > 0
    if faults == "none":
        assert n == len(truth)
