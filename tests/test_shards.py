"""The shards job: formats, balance, near-duplicate drop, manifest integrity, atomic out dir."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from upstream import BUCKETS, PREFIX, SUFFIX, FakeUpstream, run_pairs, suggestion

from echo.config import LakeConfig
from echo.errors import ConfigError
from echo.lake.tables import FEEDBACK, REFINEMENT_PAIRS
from echo.pairs_config import ShardsConfig
from echo.progress import Progress
from echo.shards.manifest import ManifestError, load_manifest, verify
from echo.stages.shards import (
    KTO_COLUMNS,
    PREF_COLUMNS,
    SFT_COLUMNS,
    clip_prefix,
    clip_suffix,
    fim_prompt,
    fim_prompt_col,
    sft_rows,
)


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
    for u in range(4):  # unpaired feedback only: undesirable proposals
        rows.append(
            suggestion(f"d{u:03d}", f"user{u}", outcome="deleted", proposal=f"del_{u}()", final="")
        )
        rows.append(
            suggestion(f"w{u:03d}", f"user{u}", outcome="rewritten", proposal=f"bad_{u}()",
                       final="print('mine')", similarity=0.1)
        )  # fmt: skip
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
        for f in sorted((out / "kto" / split).glob("*.parquet")):
            assert tuple(pq.read_schema(f).names) == KTO_COLUMNS


def test_rows_are_fim_prompts_with_final_text_as_completion(built: Any) -> None:
    _, out, _ = built
    t = _read_all(out, "sft")
    row = next(r for r in t if r["suggestion_id"] == "r003")
    assert row["prompt"] == fim_prompt(PREFIX, SUFFIX, ShardsConfig(out="x"))
    assert row["prompt"] == "<fim_prefix>" + PREFIX + "<fim_suffix>" + SUFFIX + "<fim_middle>"
    assert row["completion"] == "result = subtotal + 3 * tax"
    assert row["proposal"] == "result = subtotal + 3"


#: DeepSeek-Coder-style sentinels, and ones with characters SQL or regex would mangle
CUSTOM_FIM = {"fim_prefix": "<｜fim▁begin｜>", "fim_suffix": "<｜fim▁hole｜>", "fim_middle": "<｜fim▁end｜>"}
ODD_FIM = {"fim_prefix": "'pre\\", "fim_suffix": "$1 %s ${x}", "fim_middle": ""}

#: (prefix, suffix) with None, empty, shorter and longer than the clips, characters
#: outside the BMP (one code point, two UTF-16 units) and combining marks
FIM_INPUTS = [
    (None, None),
    ("", ""),
    ("a", None),
    (None, "b"),
    ("ab", "cd"),
    ("def f(x):\n    return ", "\n\nprint(f(1))\n"),
    ("x = '😀😀'; y = ", " # é and e\u0301 𝔘𝔫𝔦"),
    ("🚀" * 5, "🚀" * 5),
]


@pytest.mark.parametrize("mode", ["psm", "lm"])
@pytest.mark.parametrize("sentinels", [{}, CUSTOM_FIM, ODD_FIM], ids=["default", "custom", "odd"])
@pytest.mark.parametrize("clips", [(0, 0), (1, 1), (3, 2), (8192, 2048)], ids=lambda c: f"{c[0]}-{c[1]}")
def test_spark_prompt_column_equals_the_python_definition(
    spark: Any, mode: str, sentinels: dict[str, str], clips: tuple[int, int]
) -> None:
    """fim_prompt_col (what the shards hold) == fim_prompt (the documented definition),
    and the clipped prefix/suffix columns of the SFT rows == clip_prefix/clip_suffix."""
    from pyspark.sql import functions as F

    cfg = ShardsConfig(
        out="x", fim_mode=mode, max_prefix_chars=clips[0], max_suffix_chars=clips[1], **sentinels
    )
    df = spark.createDataFrame(
        [(i, p, s) for i, (p, s) in enumerate(FIM_INPUTS)], "i int, prefix string, suffix string"
    )
    got = {r["i"]: r["prompt"] for r in df.select("i", fim_prompt_col(cfg).alias("prompt")).collect()}
    want = {i: fim_prompt(p, s, cfg) for i, (p, s) in enumerate(FIM_INPUTS)}
    assert got == want
    if mode == "lm":
        assert all(w == clip_prefix(p, clips[0]) for w, (p, _) in zip(want.values(), FIM_INPUTS, strict=True))
    else:
        assert all(w.startswith(cfg.fim_prefix) and w.endswith(cfg.fim_middle) for w in want.values())
    pairs = df.select(
        F.lit("train").alias("split"), "prefix", "suffix", F.lit("t").alias("final_text"),
        F.lit(1.0).alias("weight"), F.col("i").cast("string").alias("suggestion_id"),
        F.lit("python").alias("language"), F.lit("m1").alias("model_id"), F.lit("p").alias("proposal"),
    )  # fmt: skip
    for r in sft_rows(pairs, cfg).collect():
        p, s = FIM_INPUTS[int(r["suggestion_id"])]
        assert (r["prompt"], r["prefix"], r["suffix"]) == (
            fim_prompt(p, s, cfg), clip_prefix(p, clips[0]), clip_suffix(s, clips[1])
        )


@pytest.mark.parametrize(
    "kw",
    [
        {"fim_mode": "lm", "max_prefix_chars": 20},
        {"fim_mode": "psm", "max_prefix_chars": 7, "max_suffix_chars": 5, **CUSTOM_FIM},
    ],
    ids=["lm", "psm-custom"],
)
def test_shards_write_prompts_in_the_configured_fim_mode(
    built: Any, tmp_path: Path, kw: dict[str, Any]
) -> None:
    up, _, _ = built
    out = tmp_path / "out"
    shards(up, out, **kw)
    cfg = ShardsConfig(out=str(out), **kw)
    sft, pref = _read_all(out, "sft"), _read_all(out, "pref")
    assert sft and pref
    want = fim_prompt(PREFIX, SUFFIX, cfg)
    assert {r["prompt"] for r in sft} == {r["prompt"] for r in pref} == {want}
    if cfg.fim_mode == "lm":
        assert want == PREFIX[-20:] and "<fim_" not in want  # left to right: no sentinels
    else:
        assert want == CUSTOM_FIM["fim_prefix"] + PREFIX[-7:] + CUSTOM_FIM["fim_suffix"] + SUFFIX[:5] + CUSTOM_FIM["fim_middle"]
    assert load_manifest(out).config["fim_mode"] == cfg.fim_mode


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


def test_kto_rows_are_unpaired_labelled_completions_from_gold_feedback(built: Any) -> None:
    up, out, report = built
    kto = {r["suggestion_id"]: r for r in _read_all(out, "kto")}
    # 40 kept (near-duplicates of k005 dropped as for the pairs), 40 refined, 4 + 4 undesirable
    assert len(kto) == 88 and "a-first" in kto and "k005" not in kto
    assert (kto["r010"]["completion"], kto["r010"]["label"]) == ("result = subtotal + 10 * tax", True)
    assert (kto["d002"]["completion"], kto["d002"]["label"]) == ("del_2()", False)
    assert (kto["w001"]["completion"], kto["w001"]["label"]) == ("bad_1()", False)
    assert kto["w001"]["prompt"] == fim_prompt(PREFIX, SUFFIX, ShardsConfig(out="x"))
    by_label = report["kto"]["by_label"]
    assert sum(v["desirable"] for v in by_label.values()) == 80
    assert sum(v["undesirable"] for v in by_label.values()) == 8
    m = load_manifest(out)
    assert sum(e.rows for e in m.shards if e.format == "kto") == 88
    assert m.source["tables"]["gold/feedback"] == up.lake.version(FEEDBACK)


def test_near_duplicates_keep_the_lowest_suggestion_id(built: Any) -> None:
    _, out, report = built
    ids = {r["suggestion_id"] for r in _read_all(out, "sft")}
    assert "a-first" in ids and "k005" not in ids and "k005-dup-a" not in ids
    assert report["near_duplicates_dropped"] == 2
    assert len(ids) == 80


def test_files_are_balanced_with_one_per_worker(built: Any) -> None:
    _, out, _ = built
    m = load_manifest(out)
    for fmt in ("sft", "pref", "kto"):
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
