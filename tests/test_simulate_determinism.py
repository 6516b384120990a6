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


def _records(out: Path) -> list[dict[str, object]]:
    import gzip
    import json

    recs: list[dict[str, object]] = []
    for p in sorted(out.glob("batch-*/*")):
        opener = gzip.open if p.suffix == ".gz" else open
        with opener(p, "rt", encoding="utf-8") as fh:
            recs.extend(json.loads(line) for line in fh if line.strip())
    return sorted(recs, key=lambda r: (str(r.get("user_id")), int(r.get("ts_ms") or 0), str(r.get("event_id"))))


def test_a_cohort_member_is_the_same_person_under_every_prefix(tmp_path: Path) -> None:
    """Paired evaluation: the same cohort index behaves the same under two user prefixes
    (same proposals in, same events out), with its own user, document and event ids."""
    corpus = make_corpus(tmp_path / "c")
    runs = {}
    for prefix in ("e1.a0", "e1.a1"):
        cfg = SimConfig(users=3, days=1, seed=5, corpus=str(corpus), user_prefix=prefix, cohort="e1",
                        models=("m",), model_quality=(0.5,), shards=1, workers=1)  # fmt: skip
        runs[prefix] = _records(simulate(cfg, FaultConfig(faults="none"), out=tmp_path / prefix).out)
    a, b = runs["e1.a0"], runs["e1.a1"]
    assert len(a) > 50 and len(a) == len(b)
    assert not {r["event_id"] for r in a} & {r["event_id"] for r in b}
    ids = ("event_id", "suggestion_id")

    def same(r: dict[str, object], prefix: str) -> dict[str, object]:
        return {k: (str(v).replace(prefix, "P") if isinstance(v, str) else v) for k, v in r.items() if k not in ids}

    assert [same(r, "e1.a0") for r in a] == [same(r, "e1.a1") for r in b]
    assert {r["user_id"] for r in a} == {f"e1.a0-{i:05d}" for i in range(3)}


def test_without_a_cohort_the_prefix_draws_other_people(tmp_path: Path) -> None:
    corpus = make_corpus(tmp_path / "c")
    runs = []
    for prefix in ("x", "y"):
        cfg = SimConfig(users=2, days=1, seed=5, corpus=str(corpus), user_prefix=prefix, models=("m",),
                        model_quality=(0.5,), shards=1, workers=1)  # fmt: skip
        recs = _records(simulate(cfg, FaultConfig(faults="none"), out=tmp_path / prefix).out)
        runs.append([r["ts_ms"] for r in recs])
    assert runs[0] != runs[1]
