"""Same seed and settings: byte-identical output, whatever the number of workers."""

from __future__ import annotations

from pathlib import Path

from test_simulate_support import make_corpus

from echo.simulate import FaultConfig, SimConfig, simulate


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_gives_identical_bytes(tmp_path: Path) -> None:
    corpus = make_corpus(tmp_path / "c")
    cfg = SimConfig(users=4, days=1, seed=3, corpus=str(corpus), format="jsonl.gz", shards=2, workers=1)
    a = simulate(cfg, FaultConfig(faults="heavy"), out=tmp_path / "a")
    b = simulate(cfg, FaultConfig(faults="heavy"), out=tmp_path / "b")
    fa, fb = _files(a.out), _files(b.out)
    assert len(fa) > 4
    assert fa == fb


def test_worker_count_does_not_change_output(tmp_path: Path) -> None:
    corpus = make_corpus(tmp_path / "c")
    one = SimConfig(users=4, days=1, seed=4, corpus=str(corpus), format="parquet", shards=2, workers=1)
    two = SimConfig(users=4, days=1, seed=4, corpus=str(corpus), format="parquet", shards=2, workers=2)
    a = simulate(one, FaultConfig(faults="light"), out=tmp_path / "a")
    b = simulate(two, FaultConfig(faults="light"), out=tmp_path / "b")
    fa, fb = _files(a.out), _files(b.out)
    fa.pop("summary.json"), fb.pop("summary.json")  # records the workers setting
    assert fa == fb


def test_other_seed_gives_other_events(tmp_path: Path) -> None:
    corpus = make_corpus(tmp_path / "c")
    a = simulate(SimConfig(users=2, days=1, seed=1, corpus=str(corpus)), FaultConfig(faults="none"), out=tmp_path / "a")
    b = simulate(SimConfig(users=2, days=1, seed=2, corpus=str(corpus)), FaultConfig(faults="none"), out=tmp_path / "b")
    events_a = b"".join(v for k, v in _files(a.out).items() if k.startswith("batch-"))
    events_b = b"".join(v for k, v in _files(b.out).items() if k.startswith("batch-"))
    assert events_a and events_b and events_a != events_b


def test_user_prefix_gives_disjoint_users(tmp_path: Path) -> None:
    corpus = make_corpus(tmp_path / "c")
    a = simulate(SimConfig(users=2, days=1, corpus=str(corpus), user_prefix="r1"), FaultConfig(faults="none"), out=tmp_path / "a")
    b = simulate(SimConfig(users=2, days=1, corpus=str(corpus), user_prefix="r2"), FaultConfig(faults="none"), out=tmp_path / "b")
    import pyarrow.parquet as pq

    ua = set(pq.read_table(a.truth_path)["user_id"].to_pylist())
    ub = set(pq.read_table(b.truth_path)["user_id"].to_pylist())
    assert ua and ub and not (ua & ub)
