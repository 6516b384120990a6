"""Bad inputs to 'train' fail early with one clear line (no Ray run starts)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("transformers")

from echo.errors import EchoError
from echo.shards.manifest import ManifestError
from echo.train import TrainConfig, train
from echo.train.synthetic import TINY_LLAMA, write_synthetic_shards

pytestmark = pytest.mark.train
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def shards(tmp_path: Path) -> Path:
    root = tmp_path / "shards"
    write_synthetic_shards(root, n_train=8, n_val=2, n_test=2)
    return root


@pytest.fixture
def tiny(tmp_path: Path) -> Path:
    p = tmp_path / "tiny.json"
    p.write_text(json.dumps(TINY_LLAMA), encoding="utf-8")
    return p


def _tamper(root: Path) -> None:
    target = next((root / "pref" / "train").glob("*.parquet"))
    target.write_bytes(target.read_bytes() + b"\0")


def test_manifest_hash_mismatch_is_refused(shards: Path, tiny: Path, tmp_path: Path) -> None:
    _tamper(shards)
    cfg = TrainConfig(shards=str(shards), model=str(tiny), out=str(tmp_path / "o"), objective="dpo")
    with pytest.raises(ManifestError, match="does not match its manifest hash"):
        train(cfg)


def test_missing_model_path_is_an_echo_error(shards: Path, tmp_path: Path) -> None:
    cfg = TrainConfig(
        shards=str(shards), model=str(tmp_path / "no-such-model"), out=str(tmp_path / "o")
    )
    with pytest.raises(EchoError, match="model not found"):
        train(cfg)


def test_uncached_hub_id_is_refused_without_download(shards: Path, tmp_path: Path) -> None:
    cfg = TrainConfig(
        shards=str(shards), model="echo-test/definitely-not-cached", out=str(tmp_path / "o")
    )
    with pytest.raises(EchoError, match="hub id in the local cache"):
        train(cfg)


def test_model_config_without_model_type_is_refused(shards: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("hidden_size: 8\n", encoding="utf-8")
    cfg = TrainConfig(shards=str(shards), model=str(bad), out=str(tmp_path / "o"))
    with pytest.raises(EchoError, match="model_type"):
        train(cfg)


def test_directory_without_manifest_is_refused(tiny: Path, tmp_path: Path) -> None:
    cfg = TrainConfig(shards=str(tmp_path), model=str(tiny), out=str(tmp_path / "o"))
    with pytest.raises(ManifestError, match=r"no manifest\.json"):
        train(cfg)


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "echo", "train", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_cli_bad_model_exits_nonzero_with_one_line(shards: Path, tmp_path: Path) -> None:
    proc = _cli(
        "--shards", str(shards), "--model", str(tmp_path / "missing"), "--out", str(tmp_path / "o")
    )
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "model not found" in lines[0]


def test_cli_tampered_shards_exit_nonzero_with_one_line(
    shards: Path, tiny: Path, tmp_path: Path
) -> None:
    _tamper(shards)
    proc = _cli(
        "--shards",
        str(shards),
        "--model",
        str(tiny),
        "--out",
        str(tmp_path / "o"),
        "--objective",
        "sft+dpo",
    )
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "does not match its manifest hash" in lines[0]


def test_resume_from_a_checkpoint_of_other_shards_is_refused(
    shards: Path, tiny: Path, tmp_path: Path
) -> None:
    from echo.train.checkpoint import CheckpointError

    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    (ckpt / "meta.json").write_text(
        json.dumps({"step": 3, "manifest_sha256": "0" * 64}), encoding="utf-8"
    )
    cfg = TrainConfig(
        shards=str(shards), model=str(tiny), out=str(tmp_path / "o"), resume_from=str(ckpt)
    )
    with pytest.raises(CheckpointError, match="trained on other shards"):
        train(cfg)


def test_resume_from_a_directory_that_is_no_checkpoint_is_refused(
    shards: Path, tiny: Path, tmp_path: Path
) -> None:
    from echo.train.checkpoint import CheckpointError

    cfg = TrainConfig(
        shards=str(shards), model=str(tiny), out=str(tmp_path / "o"), resume_from=str(tmp_path)
    )
    with pytest.raises(CheckpointError, match="not an echo training checkpoint"):
        train(cfg)


def test_too_few_rows_for_the_workers_is_refused(tiny: Path, tmp_path: Path) -> None:
    root = tmp_path / "small"
    write_synthetic_shards(root, n_train=3, n_val=1, n_test=1)
    cfg = TrainConfig(shards=str(root), model=str(tiny), out=str(tmp_path / "o"), num_workers=4)
    with pytest.raises(EchoError, match="too few"):
        train(cfg)


def test_kto_without_kto_rows_is_refused(tiny: Path, tmp_path: Path) -> None:
    """Shards of a lake without gold/feedback have empty kto/ files: one line, no worker."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from echo.shards.manifest import Manifest, describe_shard, load_manifest, write_manifest

    root = tmp_path / "nokto"
    write_synthetic_shards(root, n_train=8, n_val=2, n_test=2)
    m = load_manifest(root)
    entries = []
    for e in m.shards:
        if e.format == "kto":
            pq.write_table(pa.Table.from_pylist([], schema=pq.read_schema(root / e.path)), root / e.path)
            entries.append(describe_shard(root, e.path, "kto", e.split))
        else:
            entries.append(e)
    write_manifest(root, Manifest(shards=tuple(entries), fim=m.fim))
    cfg = TrainConfig(shards=str(root), model=str(tiny), out=str(tmp_path / "o"), objective="kto")
    with pytest.raises(EchoError, match=r"no kto/train rows"):
        train(cfg)


def _checkpoint_meta(directory: Path, shards: Path, world_size: int) -> Path:
    from echo.shards.manifest import load_manifest

    directory.mkdir(parents=True)
    meta = {"step": 2, "manifest_sha256": load_manifest(shards).sha256, "world_size": world_size}
    (directory / "meta.json").write_text(json.dumps(meta), encoding="utf-8")
    return directory


def test_resume_from_a_checkpoint_of_another_worker_count_is_refused(
    shards: Path, tiny: Path, tmp_path: Path
) -> None:
    from echo.train.checkpoint import CheckpointError

    ckpt = _checkpoint_meta(tmp_path / "ckpt", shards, world_size=2)
    cfg = TrainConfig(
        shards=str(shards),
        model=str(tiny),
        out=str(tmp_path / "o"),
        num_workers=1,
        resume_from=str(ckpt),
    )
    with pytest.raises(
        CheckpointError, match="written by 2 workers but this run has --num-workers 1"
    ):
        train(cfg)


def test_rerun_of_a_run_with_another_worker_count_is_refused(
    shards: Path, tiny: Path, tmp_path: Path
) -> None:
    """The checkpoints Ray Train would resume from (same run name and storage) are checked."""
    from echo.train.checkpoint import CheckpointError

    out = tmp_path / "o"
    _checkpoint_meta(out / "ray" / "r1" / "checkpoint_2026-01-01_00-00-00.000000", shards, 2)
    cfg = TrainConfig(
        shards=str(shards), model=str(tiny), out=str(out), num_workers=1, run_name="r1"
    )
    with pytest.raises(CheckpointError, match="written by 2 workers"):
        train(cfg)


def test_cli_worker_count_mismatch_exits_nonzero_with_one_line(
    shards: Path, tiny: Path, tmp_path: Path
) -> None:
    ckpt = _checkpoint_meta(tmp_path / "ckpt", shards, world_size=2)
    proc = _cli(
        "--shards",
        str(shards),
        "--model",
        str(tiny),
        "--out",
        str(tmp_path / "o"),
        "--num-workers",
        "1",
        "--resume-from",
        str(ckpt),
    )
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "written by 2 workers" in lines[0], proc.stderr
