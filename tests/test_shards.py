"""The shards job: formats, balance, near-duplicate drop, manifest integrity, atomic out dir."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from test_pairs_helpers import BUCKETS, FakeUpstream, run_pairs, suggestion

from echo.config import LakeConfig
from echo.errors import ConfigError
from echo.lake.tables import REFINEMENT_PAIRS
from echo.pairs_config import ShardsConfig
from echo.progress import Progress
from echo.shards.manifest import ManifestError, load_manifest, verify
from echo.stages.shards import PREF_COLUMNS, SFT_COLUMNS, fim_prompt


def shards(up: FakeUpstream, out: Path, **kw: Any) -> dict[str, Any]:
    from echo.jobs.shards import execute

    lake_cfg = LakeConfig(lake=up.lake.root, lake_backend="delta-rs", buckets=BUCKETS)
    cfg = ShardsConfig(out=str(out), **kw)
    return execute(up.spark, up.lake, lake_cfg, cfg, progress=Progress("shards", quiet=True))


@pytest.fixture(scope="module")
def built(
    spark: Any, tmp_path_factory: pytest.TempPathFactory
) -> tuple[FakeUpstream, Path, dict[str, Any]]:
    root = tmp_path_factory.mktemp("shards")
    up = FakeUpstream(spark, str(root / "lake"))
    rows = []
    for u in range(40):
        rows.append(suggestion(f"k{u:03d}", f"user{u}", proposal=f"result = subtotal * {u}"))
        rows.append(
            suggestion(
                f"r{u:03d}",
                f"user{u}",
                outcome="refined",
                proposal=f"result = subtotal + {u}",
                final=f"result = subtotal + {u} * tax",
                similarity=0.8,
            )
        )
    # two near-duplicates of k005 (same context and target) from other users
    rows.append(suggestion("k005-dup-a", "user7", proposal="result = subtotal * 5"))
    rows.append(suggestion("a-first", "user8", proposal="result  =  subtotal * 5"))
    up.batch(rows)
    run_pairs(up)
    out = root / "out"
    report = shards(up, out, workers=2)
    return up, out, report


def test_sft_and_pref_files_have_the_fixed_columns(built: Any) -> None:
    _, out, _ = built
    for split in ("train", "val", "test"):
        for f in sorted((out / "sft" / split).glob("*.parquet")):
            assert tuple(pq.read_schema(f).names) == SFT_COLUMNS
        for f in sorted((out / "pref" / split).glob("*.parquet")):
            assert tuple(pq.read_schema(f).names) == PREF_COLUMNS


def test_rows_are_fim_prompts_with_final_text_as_completion(built: Any) -> None:
    _, out, _ = built
    t = _read_all(out, "sft")
    row = next(r for r in t if r["suggestion_id"] == "r003")
    assert row["prompt"] == fim_prompt(row["prefix"], row["suffix"], ShardsConfig(out="x"))
    assert row["prompt"].startswith("<fim_prefix>") and row["prompt"].endswith("<fim_middle>")
    assert row["completion"] == "result = subtotal + 3 * tax"
    assert row["proposal"] == "result = subtotal + 3"


def _read_all(out: Path, fmt: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for f in sorted(out.glob(f"{fmt}/*/*.parquet")):
        rows += pq.read_table(f).to_pylist()
    return rows


def test_pref_rows_come_from_refined_pairs_only(built: Any) -> None:
    _, out, _ = built
    pref = _read_all(out, "pref")
    assert {r["suggestion_id"][0] for r in pref} == {"r"}
    assert len(pref) == 40
    r = next(r for r in pref if r["suggestion_id"] == "r010")
    assert (r["chosen"], r["rejected"]) == (
        "result = subtotal + 10 * tax",
        "result = subtotal + 10",
    )


def test_near_duplicates_keep_the_lowest_suggestion_id(built: Any) -> None:
    _, out, report = built
    ids = {r["suggestion_id"] for r in _read_all(out, "sft")}
    assert "a-first" in ids and "k005" not in ids and "k005-dup-a" not in ids
    assert report["near_duplicates_dropped"] == 2
    assert len(ids) == 80


def test_files_are_balanced_with_one_per_worker(built: Any) -> None:
    _, out, _ = built
    m = load_manifest(out)
    for fmt in ("sft", "pref"):
        for split in ("train", "val", "test"):
            entries = m.select(fmt, split)
            rows = [e.rows for e in entries]
            if sum(rows) >= 2:
                assert len(entries) == 2
                assert max(rows) - min(rows) <= 1


def test_manifest_lists_every_file_with_rows_and_lake_versions(built: Any) -> None:
    up, out, report = built
    m = load_manifest(out)
    files = sorted(str(p.relative_to(out)) for p in out.rglob("*.parquet"))
    assert sorted(e.path for e in m.shards) == files
    for e in m.shards:
        assert e.rows == pq.read_metadata(out / e.path).num_rows
    assert sum(e.rows for e in m.shards if e.format == "sft") == 80
    assert m.source["tables"]["gold/refinement_pairs"] == up.lake.version(REFINEMENT_PAIRS)
    assert m.fim == {"prefix": "<fim_prefix>", "suffix": "<fim_suffix>", "middle": "<fim_middle>"}
    assert m.config["workers"] == 2
    assert report["manifest_sha256"] == m.sha256
    verify(out, m)


def test_verify_detects_a_changed_shard(built: Any, tmp_path: Path) -> None:
    import shutil

    _, out, _ = built
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    m = load_manifest(copy)
    victim = copy / m.shards[0].path
    table = pq.read_table(victim)
    pq.write_table(table.slice(0, max(0, table.num_rows - 1)), victim)
    with pytest.raises(ManifestError):
        verify(copy, m)


@pytest.mark.slow
def test_shards_are_readable_by_ray_data(built: Any) -> None:
    ray = pytest.importorskip("ray")
    _, out, _ = built
    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)
    try:
        ds = ray.data.read_parquet(str(out / "sft" / "train"))
        assert ds.count() == sum(e.rows for e in load_manifest(out).select("sft", "train"))
    finally:
        ray.shutdown()


def test_rerun_replaces_the_out_dir(built: Any) -> None:
    up, out, _ = built
    stale = out / "sft" / "train" / "part-00099.parquet"
    stale.write_bytes(b"old")
    report = shards(up, out, num_shards=3)
    assert not stale.exists()
    assert report["files"]["sft"]["train"] == 3
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".out.")]
    verify(out, load_manifest(out))


def test_refuses_to_replace_a_directory_that_is_not_shards(built: Any, tmp_path: Path) -> None:
    up, _, _ = built
    (tmp_path / "home").mkdir()
    (tmp_path / "home" / "notes.txt").write_text("keep me")
    with pytest.raises(ConfigError):
        shards(up, tmp_path / "home")
    assert (tmp_path / "home" / "notes.txt").read_text() == "keep me"
