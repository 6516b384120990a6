"""The simulator's Python API: :func:`simulate` writes batches, truth and a summary.

Users are split over a fixed number of shards (``SimConfig.shards``); each shard is
simulated by one process and writes one file per batch, so the output depends on the
seed and the settings only, never on the number of worker processes.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing as mp
import os
import shutil
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from echo.config import to_dict
from echo.errors import EchoError
from echo.simulate.config import FaultConfig, SimConfig
from echo.simulate.corpus import Corpus, language_of
from echo.simulate.proposers import Proposer, default_proposers
from echo.simulate.truth import TRUTH_COLUMNS
from echo.simulate.users import DAY_MS, Request, UserSim
from echo.simulate.writer import ShardSink

TRUTH_FILE = "truth.parquet"
SUMMARY_FILE = "summary.json"
FAULTS_FILE = "faults.json"


@dataclass
class SimResult:
    """What a run wrote: batch folders in delivery order, the truth table, the summary."""

    out: Path
    batch_dirs: list[Path]
    truth_path: Path
    summary: dict[str, Any]
    elapsed_s: float = 0.0
    stats_text: str = field(default="", repr=False)

    @property
    def events(self) -> int:
        return int(self.summary["events"]["clean"])

    @property
    def records(self) -> int:
        return int(self.summary["events"]["records_written"])


def truth_schema() -> Any:
    import pyarrow as pa

    types = {
        "shown_ts_ms": pa.int64(),
        "edit_similarity": pa.float64(),
        "n_refine_edits": pa.int64(),
        "touched": pa.bool_(),
    }
    return pa.schema([(c, types.get(c, pa.string())) for c in TRUTH_COLUMNS])


@dataclass
class _ShardJob:
    shard: int
    user_indices: list[int]
    cfg: SimConfig
    rates: dict[str, float]
    skew_max_ms: int
    corpus: Corpus
    proposers: list[Any]
    out: Path
    progress: bool


def _flush_truth(rows: list[dict[str, Any]], writer: Any) -> None:
    import pyarrow as pa

    if rows:
        writer.write_table(pa.Table.from_pylist(rows, schema=truth_schema()))
        rows.clear()


def _run_shard(job: _ShardJob) -> dict[str, Any]:
    import pyarrow.parquet as pq

    cfg = job.cfg
    sink = ShardSink(
        job.out,
        job.shard,
        fmt=cfg.format,
        batches=cfg.batches,
        start_ms=cfg.start_ts_ms,
        span_ms=cfg.days * DAY_MS,
        rates=job.rates,
        seed=cfg.seed,
    )
    files_by_lang: dict[str, list[str]] = {}
    for f in job.corpus.files:
        files_by_lang.setdefault(language_of(f) or "", []).append(f)
    model_ids = [p.model_id for p in job.proposers]
    rows: list[dict[str, Any]] = []
    parts = job.out / "_truth_parts"
    parts.mkdir(exist_ok=True)
    writer = pq.ParquetWriter(
        str(parts / f"part-{job.shard:05d}.parquet"), truth_schema(), compression="zstd"
    )
    users = [
        UserSim(
            i,
            cfg,
            job.corpus,
            job.rates,
            sink.emit,
            rows,
            sink.counts,
            model_ids,
            files_by_lang,
            job.skew_max_ms,
        )
        for i in job.user_indices
    ]
    gens = {i: u.run() for i, u in enumerate(users)}
    pending: dict[int, Request] = {}

    def step(i: int, value: str | None) -> None:
        with contextlib.suppress(StopIteration):
            pending[i] = gens[i].send(value)  # type: ignore[arg-type]

    for i in gens:
        step(i, None)
    started = time.monotonic()
    next_report = 250_000
    while pending:
        batch = sorted(pending.items())
        pending.clear()
        answers: dict[int, str] = {}
        for m, proposer in enumerate(job.proposers):
            items = [(i, r) for i, r in batch if r.model_index == m]
            if not items:
                continue
            ctx = [(r.prefix, r.suffix) for _, r in items]
            if getattr(proposer, "uses_truth", False):
                texts = proposer.propose_batch(ctx, truths=[r.truth for _, r in items])
            else:
                texts = proposer.propose_batch(ctx)
            answers.update({i: t for (i, _), t in zip(items, texts, strict=True)})
        for i, _ in batch:
            step(i, answers[i])
        if len(rows) >= 20_000:
            _flush_truth(rows, writer)
        if job.progress and sink.clean >= next_report:
            next_report += 250_000
            print(
                f"[simulate] shard {job.shard}: {sink.clean:,} events, {time.monotonic() - started:.0f}s",
                file=sys.stderr,
                flush=True,
            )
    _flush_truth(rows, writer)
    writer.close()
    if cfg.write_docs:
        docs_dir = job.out / "docs"
        docs_dir.mkdir(exist_ok=True)
        with open(docs_dir / f"part-{job.shard:05d}.jsonl", "w", encoding="utf-8") as fh:
            for u in users:
                for doc, first in u.all_docs:
                    rec = {
                        "doc_id": doc.doc_id,
                        "initial_text": first,
                        "final_text": doc.text,
                        "version": doc.version,
                    }
                    fh.write(json.dumps(rec, ensure_ascii=False) + "\n")
    per_batch = sink.close()
    return {
        "shard": job.shard,
        "clean": sink.clean,
        "by_type": dict(sink.by_type),
        "faults": dict(sink.counts),
        "per_batch": per_batch,
    }


def _prepare_out(out: Path) -> None:
    if out.exists():
        if not out.is_dir():
            raise EchoError(f"output path {out} exists and is not a directory")
        entries = list(out.iterdir())
        if entries and not (out / SUMMARY_FILE).exists():
            raise EchoError(
                f"output directory {out} is not empty (and not an earlier simulator output)"
            )
        for e in entries:  # an earlier simulator output: replace it whole
            if e.is_dir() and (e.name.startswith("batch-") or e.name in ("_truth_parts", "docs")):
                shutil.rmtree(e)
            elif e.name in (TRUTH_FILE, SUMMARY_FILE, FAULTS_FILE):
                e.unlink()
    out.mkdir(parents=True, exist_ok=True)


def simulate(
    config: SimConfig,
    faults: FaultConfig | None = None,
    *,
    out: str | os.PathLike[str],
    proposer: Proposer | Sequence[Proposer] | None = None,
    corpus: Corpus | None = None,
    progress: bool = False,
) -> SimResult:
    """Simulate ``config.users`` users over ``config.days`` days and write the output.

    ``proposer``: one proposal model, several (users switch between them per session),
    or None for the built-in noisy oracles named by ``config.models``. With a real model
    (one whose ``uses_truth`` is false) the default is one worker process.
    """
    import pyarrow.parquet as pq

    faults = faults or FaultConfig()
    rates = faults.rates()
    out_path = Path(out)
    started = time.monotonic()
    corpus = corpus or Corpus.from_dir(config.corpus or None)
    if proposer is None:
        proposers: list[Any] = default_proposers(config.models, config.model_quality, config.seed)
    elif isinstance(proposer, Sequence):
        proposers = list(proposer)
    else:
        proposers = [proposer]
    if not proposers:
        raise EchoError("at least one proposer is needed")
    _prepare_out(out_path)
    n_shards = min(config.n_shards, config.users)
    shard_users: list[list[int]] = [[] for _ in range(n_shards)]
    for k in range(config.users):
        shard_users[k % n_shards].append(config.user_offset + k)
    jobs = [
        _ShardJob(
            s,
            shard_users[s],
            config,
            rates,
            int(faults.clock_skew_max_s * 1000),
            corpus,
            proposers,
            out_path,
            progress,
        )
        for s in range(n_shards)
    ]
    real_model = any(not getattr(p, "uses_truth", False) for p in proposers)
    workers = config.workers or (1 if real_model else os.cpu_count() or 1)
    workers = max(1, min(workers, n_shards))
    results: list[dict[str, Any]] = []
    from echo.progress import bar

    status = bar("simulate", n_shards, "shards", quiet=not progress)
    if workers == 1:
        for job in jobs:
            results.append(_run_shard(job))
            _report(status, results)
    else:
        ctx = mp.get_context("fork" if sys.platform.startswith("linux") else "spawn")
        with ctx.Pool(workers) as pool:
            for res in pool.imap_unordered(_run_shard, jobs):
                results.append(res)
                _report(status, results)
    status.close()
    results.sort(key=lambda r: r["shard"])

    # truth: all shards' parts in one table, in a stable order
    parts_dir = out_path / "_truth_parts"
    tables = [pq.read_table(parts_dir / f"part-{s:05d}.parquet") for s in range(n_shards)]
    import pyarrow as pa

    truth = pa.concat_tables(tables).sort_by(
        [("user_id", "ascending"), ("shown_ts_ms", "ascending"), ("suggestion_id", "ascending")]
    )
    truth_path = out_path / TRUTH_FILE
    pq.write_table(truth, str(truth_path), compression="zstd")
    shutil.rmtree(parts_dir)

    summary = _summary(config, faults, rates, corpus, proposers, results, truth)
    (out_path / SUMMARY_FILE).write_text(
        json.dumps(summary, indent=2, sort_keys=True) + "\n", encoding="utf-8"
    )
    (out_path / FAULTS_FILE).write_text(
        json.dumps(
            {"rates": rates, "injected": summary["faults"]["injected"]}, indent=2, sort_keys=True
        )
        + "\n",
        encoding="utf-8",
    )
    batch_dirs = [out_path / f"batch-{b:04d}" for b in range(config.batches)]
    return SimResult(
        out_path, batch_dirs, truth_path, summary, time.monotonic() - started, format_stats(summary)
    )


def _report(status: Any, results: list[dict[str, Any]]) -> None:
    """One more shard done: the bar (with the time left) and the events written so far."""
    status.set_postfix_str(f"{sum(r['clean'] for r in results):,} events written", refresh=False)
    status.update(1)


def _summary(
    cfg: SimConfig,
    faults: FaultConfig,
    rates: dict[str, float],
    corpus: Corpus,
    proposers: list[Any],
    results: list[dict[str, Any]],
    truth: Any,
) -> dict[str, Any]:
    by_type: Counter[str] = Counter()
    injected: Counter[str] = Counter()
    per_batch = [0] * cfg.batches
    for r in results:
        by_type.update(r["by_type"])
        injected.update(r["faults"])
        per_batch = [a + b for a, b in zip(per_batch, r["per_batch"], strict=True)]
    clean = sum(r["clean"] for r in results)
    cols = truth.select(["model_id", "outcome", "n_refine_edits", "touched"]).to_pydict()
    outcomes = Counter(cols["outcome"])
    shown = len(cols["outcome"])
    accepted = shown - outcomes["rejected"] - outcomes["ignored"]
    refined_edits = [
        n for o, n in zip(cols["outcome"], cols["n_refine_edits"], strict=True) if o == "refined"
    ]
    per_model: dict[str, dict[str, Any]] = {}
    for m, o in zip(cols["model_id"], cols["outcome"], strict=True):
        d = per_model.setdefault(m, {"shown": 0, "accepted": 0})
        d["shown"] += 1
        d["accepted"] += o not in ("rejected", "ignored")
    for d in per_model.values():
        d["acceptance_rate"] = round(d["accepted"] / d["shown"], 4) if d["shown"] else 0.0
    kinds = ("late", "duplicate", "out_of_order", "clock_skew_users", "lost_edit", "ambiguous_version",
             "invalid_json", "missing_field", "wrong_type", "unknown_event_type", "negative_value",
             "text_too_large", "conflicting_duplicate")  # fmt: skip
    return {
        "config": to_dict(cfg, faults),
        "corpus": {"root": corpus.root, "files": len(corpus)},
        "models": [p.model_id for p in proposers],
        "batches": [f"batch-{b:04d}" for b in range(cfg.batches)],
        "events": {
            "clean": clean,
            "by_type": dict(sorted(by_type.items())),
            "records_written": sum(per_batch),
            "records_per_batch": per_batch,
        },
        "faults": {"rates": rates, "injected": {k: int(injected.get(k, 0)) for k in kinds}},
        "truth": {
            "suggestions": shown,
            "outcomes": dict(sorted(outcomes.items())),
            "acceptance_rate": round(accepted / shown, 4) if shown else 0.0,
            "refined_share_of_accepted": round(outcomes["refined"] / accepted, 4)
            if accepted
            else 0.0,
            "changed_share_of_accepted": round(
                (outcomes["refined"] + outcomes["rewritten"] + outcomes["deleted"]) / accepted, 4
            )
            if accepted
            else 0.0,
            "edits_per_refinement": round(sum(refined_edits) / len(refined_edits), 2)
            if refined_edits
            else 0.0,
            "touched_by_faults": int(sum(cols["touched"])),
            "per_model": dict(sorted(per_model.items())),
        },
    }


def format_stats(summary: dict[str, Any]) -> str:
    """The short statistical summary printed after each run."""
    ev, tr, fa = summary["events"], summary["truth"], summary["faults"]["injected"]
    lines = [
        f"events: {ev['clean']:,} ({', '.join(f'{k} {v:,}' for k, v in ev['by_type'].items())}); "
        f"records written: {ev['records_written']:,} in {len(ev['records_per_batch'])} batches",
        f"suggestions: {tr['suggestions']:,}; acceptance rate {tr['acceptance_rate']:.1%}; outcomes "
        + ", ".join(f"{k} {v:,}" for k, v in tr["outcomes"].items()),
        f"accepted later refined: {tr['refined_share_of_accepted']:.1%} (changed at all: "
        f"{tr['changed_share_of_accepted']:.1%}); edits per refinement: {tr['edits_per_refinement']}",
        "per model: "
        + ", ".join(
            f"{m} {d['acceptance_rate']:.1%} of {d['shown']:,}" for m, d in tr["per_model"].items()
        ),
        "faults injected: "
        + (", ".join(f"{k} {v:,}" for k, v in fa.items() if v) or "none")
        + f"; suggestions touched by faults: {tr['touched_by_faults']:,}",
    ]
    return "\n".join(lines)
