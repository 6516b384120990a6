"""The experience loop at a tiny size: one round, a tiny model, few users, few steps.

Checks that every stage ran for real (Spark + Delta tables with versions, read back with
deltalake; a Ray Train result with a checkpoint) and that the report's numbers are what
the evaluation lake's tables give. No assertion on the size of the effect.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("ray.train")
pytest.importorskip("deltalake")

from deltalake import DeltaTable

from echo.loop import tiny
from echo.loop.stats import wilson

pytestmark = [pytest.mark.train, pytest.mark.timeout(900)]

HARVEST_TABLES = ("bronze/events", "silver/sessions", "silver/suggestions",
                  "gold/acceptance_metrics", "gold/refinement_pairs")  # fmt: skip


@pytest.fixture(scope="module")
def loop_run(spark: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    import ray

    from echo.loop.report import write_report
    from echo.loop.rounds import run_loop

    out = tmp_path_factory.mktemp("loop")
    ray.init(num_cpus=2, include_dashboard=False, runtime_env={"env_vars": {"DS_ACCELERATOR": "cpu"}})
    try:
        # one delivery batch (tiny's two run the harvest pipeline twice, ~30 s more here):
        # batch-by-batch runs == one run is tested in tests/test_incremental.py
        cfg = tiny(str(out), ablations=("raw-accepted", "echo+kto", "none"), batches=1)
        results = run_loop(cfg)
        write_report(results, out)
        yield {"out": out, "results": json.loads((out / "results.json").read_text())}
    finally:
        ray.shutdown()


def _round(run: dict[str, Any]) -> dict[str, Any]:
    return run["results"]["rounds"][0]


def test_harvest_lake_tables_are_delta_tables_with_versions(loop_run: dict[str, Any]) -> None:
    lake = Path(_round(loop_run)["harvest_pipeline"]["lake"])
    for name in HARVEST_TABLES:
        table = DeltaTable(str(lake / name))
        assert table.version() >= 1, name  # created, then written by the batches
        assert table.to_pyarrow_table().num_rows > 0, name


def test_eval_lake_holds_the_tracked_suggestions(loop_run: dict[str, Any]) -> None:
    lake = Path(_round(loop_run)["eval"]["lake"])
    for name in ("bronze/events", "silver/suggestions", "gold/acceptance_metrics"):
        assert DeltaTable(str(lake / name)).version() >= 1, name


def test_models_were_trained_by_the_ray_trainer(loop_run: dict[str, Any]) -> None:
    training = _round(loop_run)["training"]
    assert set(training) == {"echo", "raw-accepted", "echo+kto"}
    assert training["echo+kto"]["objective"] == "sft+kto"
    for arm, t in training.items():
        if "skipped" in t:  # too few feedback rows at this size: said, not trained
            assert arm == "echo+kto" and "kto training rows harvested" in t["skipped"]
            continue
        ckpt = Path(t["checkpoint_path"])
        assert (ckpt / "meta.json").is_file(), arm
        assert json.loads((ckpt / "meta.json").read_text())["step"] == t["steps"] > 0
        assert (Path(t["model_path"]) / "config.json").is_file()
        assert (Path(t["model_path"]).parent / "train_result.json").is_file()
        assert t["tokens"] > 0


def test_ablation_trains_on_the_same_pairs_with_raw_targets(loop_run: dict[str, Any]) -> None:
    import pyarrow.parquet as pq

    from echo.shards.manifest import load_manifest

    rnd = _round(loop_run)
    shards = Path(rnd["harvest_pipeline"]["shards"]["out"]) if "out" in rnd["harvest_pipeline"]["shards"] else None
    root = Path(rnd["harvest_pipeline"]["lake"]).parent
    echo_dir, raw_dir = shards or root / "shards", root / "shards-raw-accepted"

    def rows(d: Path) -> dict[str, str]:
        m = load_manifest(d)
        out: dict[str, str] = {}
        for e in m.select("sft", "train"):
            t = pq.read_table(d / e.path, columns=["suggestion_id", "completion"]).to_pydict()
            out.update(zip(t["suggestion_id"], t["completion"], strict=True))
        return out

    echo_rows, raw_rows = rows(echo_dir), rows(raw_dir)
    assert set(echo_rows) == set(raw_rows)
    sugg = DeltaTable(str(root / "lake" / "silver" / "suggestions")).to_pandas()
    accepted = dict(zip(sugg["suggestion_id"], sugg["accepted_text"], strict=True))
    assert all(raw_rows[s] == (accepted[s] or raw_rows[s]) for s in raw_rows)


def test_typed_arm_shards_are_echos_rows_plus_what_users_typed_instead(
    loop_run: dict[str, Any], tmp_path: Path
) -> None:
    import pyarrow.parquet as pq

    from echo.loop.pipeline import ablation_shards
    from echo.shards.manifest import load_manifest, verify

    rnd = _round(loop_run)
    echo_dir, lake = Path(rnd["harvest_pipeline"]["shards"]["out"]), Path(rnd["harvest_pipeline"]["lake"])

    def table(d: Path, fmt: str) -> Any:
        import pyarrow as pa

        return pa.concat_tables(pq.read_table(d / e.path) for e in load_manifest(d).select(fmt, "train"))

    info = ablation_shards(echo_dir, lake, tmp_path / "typed", "typed")
    typed_pref = table(echo_dir, "pref").to_pandas().query("source == 'typed'")
    got, echo = table(tmp_path / "typed", "sft").to_pandas(), table(echo_dir, "sft").to_pandas()
    assert len(got) == len(echo) + len(typed_pref) == info["rows"]
    added = got[~got.index.isin(range(len(echo)))]
    assert sorted(zip(added.suggestion_id, added.completion, strict=True)) == sorted(
        zip(typed_pref.suggestion_id, typed_pref.chosen, strict=True)
    )
    verify(tmp_path / "typed", load_manifest(tmp_path / "typed"))  # hashes and row counts hold


def test_every_arm_is_measured_on_the_same_users(loop_run: dict[str, Any]) -> None:
    rnd = _round(loop_run)
    sugg = DeltaTable(str(Path(rnd["eval"]["lake"]) / "silver" / "suggestions")).to_pandas()
    prefixes = rnd["eval"]["user_prefixes"]
    assert set(prefixes) == set(rnd["eval"]["arms"]) and len(set(prefixes.values())) == len(prefixes)
    for model, prefix in prefixes.items():
        users = set(sugg[sugg.model_id == model].user_id)
        assert users and all(u.startswith(prefix + "-") for u in users), model
    people = {m: {u.rsplit("-", 1)[1] for u in g.user_id} for m, g in sugg.groupby("model_id")}
    assert len({frozenset(v) for v in people.values()}) == 1  # one cohort, every arm


def test_paired_counts_add_up_to_the_gold_table(loop_run: dict[str, Any]) -> None:
    from echo.loop.stats import per_person

    rnd = _round(loop_run)
    lake = Path(rnd["eval"]["lake"])
    gold = DeltaTable(str(lake / "gold" / "acceptance_metrics")).to_pandas().groupby("model_id")[["shown", "accepted"]].sum()
    people = per_person(lake)
    assert set(people) == set(gold.index)
    for model, s in gold.iterrows():
        assert sum(a for a, _ in people[model].values()) == s["accepted"], model
        assert sum(n for _, n in people[model].values()) == s["shown"], model
    d = rnd["eval"]["paired"]["echo-r1 - static"]
    assert d["people"] == len(set(people["echo-r1"]) | set(people["static"]))
    assert d["ci95"][0] <= d["diff"] <= d["ci95"][1]


def test_report_acceptance_equals_the_gold_table(loop_run: dict[str, Any]) -> None:
    rnd = _round(loop_run)
    gold = DeltaTable(str(Path(rnd["eval"]["lake"]) / "gold" / "acceptance_metrics")).to_pandas()
    sums = gold.groupby("model_id")[["shown", "accepted", "kept", "accepted_chars", "retained_chars"]].sum()
    rows = {r["model"]: r for r in loop_run["results"]["table"]}
    assert set(rows) == set(sums.index)
    for model, s in sums.iterrows():
        r = rows[model]
        assert r["shown"] == s["shown"] and r["accepted"] == s["accepted"]
        assert r["acceptance"] == pytest.approx(s["accepted"] / s["shown"])
        assert r["ci95"] == pytest.approx(list(wilson(int(s["accepted"]), int(s["shown"]))))
        if s["accepted_chars"]:
            assert r["char_retention"] == pytest.approx(s["retained_chars"] / s["accepted_chars"])
        if s["accepted"]:
            assert r["kept_unchanged_share"] == pytest.approx(s["kept"] / s["accepted"])


def test_report_outcome_mix_equals_silver_suggestions(loop_run: dict[str, Any]) -> None:
    rnd = _round(loop_run)
    sugg = DeltaTable(str(Path(rnd["eval"]["lake"]) / "silver" / "suggestions")).to_pandas()
    counts = sugg.groupby(["model_id", "outcome"]).size()
    for model, m in rnd["eval"]["metrics"].items():
        got = {k: v for k, v in m["outcome_mix"].items() if v}
        want = {str(o): int(n) for (mm, o), n in counts.items() if mm == model}
        assert got == want, model


def test_eval_users_are_disjoint_from_harvest_users(loop_run: dict[str, Any]) -> None:
    rnd = _round(loop_run)
    def users(lake: str) -> set[str]:
        return set(DeltaTable(str(Path(lake) / "silver" / "suggestions")).to_pandas()["user_id"])

    harvest, held_out = users(rnd["harvest_pipeline"]["lake"]), users(rnd["eval"]["lake"])
    assert harvest and held_out and not harvest & held_out


def test_report_files_are_written(loop_run: dict[str, Any]) -> None:
    out = loop_run["out"]
    for name in ("report.md", "report.html", "results.json", "acceptance_by_round.png",
                 "outcome_mix.png", "training_loss.png"):  # fmt: skip
        assert (out / name).stat().st_size > 0, name
    md = (out / "report.md").read_text()
    for row in loop_run["results"]["table"]:
        assert f"| {row['model']} |" in md and f"{row['acceptance']:.1%}" in md


def test_early_forecast_rates_are_those_of_the_suggestions_open_at_the_backtest_time(
    loop_run: dict[str, Any],
) -> None:
    rnd = _round(loop_run)
    ef = rnd["eval"]["early_forecast"]
    assert "skipped" not in ef, ef
    nodes = DeltaTable(str(Path(rnd["eval"]["lake"]) / "gold/suggestion_graph")).to_pandas(
        columns=["model_id", "shown_ts_ms", "known_ts_ms", "outcome"]
    )
    final = ("ignored", "rejected", "kept", "refined", "rewritten", "deleted")
    t = ef["as_of_ms"]
    open_ = nodes[(nodes["shown_ts_ms"] <= t) & (nodes["known_ts_ms"] > t) & nodes["outcome"].isin(final)]
    by_model = {p["model_id"]: p for p in ef["per_model"]}
    assert set(by_model) == set(nodes.loc[nodes["shown_ts_ms"] <= t, "model_id"])
    assert set(by_model) <= set(rnd["eval"]["arms"])
    assert sum(p["open"] for p in by_model.values()) == len(open_) > 0
    for model, g in open_.groupby("model_id"):
        p = by_model[model]
        assert p["open"] == len(g)
        assert p["later_measured_refine"] == pytest.approx((g["outcome"] == "refined").mean())
        assert p["later_measured_delete"] == pytest.approx((g["outcome"] == "deleted").mean())
        assert 0.0 <= p["forecast_refine"] <= 1.0 and 0.0 <= p["forecast_delete"] <= 1.0


def test_report_shows_the_early_forecast_next_to_the_measured_rates(loop_run: dict[str, Any]) -> None:
    md = (loop_run["out"] / "report.md").read_text()
    assert "## Early forecast of refine and delete rates" in md
    rows = loop_run["results"]["early_forecast"]
    assert {r["model_id"] for r in rows} == {p["model_id"] for p in _round(loop_run)["eval"]["early_forecast"]["per_model"]}
    for r in rows:
        mix = _round(loop_run)["eval"]["metrics"][r["model_id"]]["outcome_mix"]
        assert r["measured_refine"] == pytest.approx(mix.get("refined", 0) / sum(mix.values()))
        assert f"| {r['round']} | {r['model_id']} | {r['open']:,} |" in md


def test_wilson_interval_matches_the_closed_form() -> None:
    lo, hi = wilson(20, 100)
    assert lo == pytest.approx(0.1333, abs=1e-4) and hi == pytest.approx(0.2888, abs=1e-4)
    assert wilson(0, 0) == (0.0, 0.0)
