"""The experience loop: static baseline, then R rounds of deploy -> harvest -> retrain
-> measure on fresh held-out users, with ablations on the same telemetry.

Round r (1..R):

1. **Deploy and harvest**: the current Echo model (the static one in round 1) proposes
   to ``harvest_users`` fresh users (ids ``h{r}-*``) writing the project's harvest files.
2. **Pipeline**: their telemetry goes through ingest, sessionize, track, pairs (Spark,
   Delta) and the shards.
3. **Retrain**: Echo fine-tunes the current model on the refined final texts (Ray Train
   + DeepSpeed); each ablation fine-tunes the same starting model on the same pairs with
   another target (``raw-accepted``: the text as accepted; ``raw-shown``: the proposal as
   shown); ``none`` is the starting model itself.
4. **Measure**: ``eval_users`` fresh users (ids ``e{r}-*``, never in any training data)
   write the held-out project files; every arm plus the static model is deployed to them,
   A/B by session, and their telemetry goes through ingest/sessionize/track into the
   round's evaluation lake, from whose tables the report's numbers are computed.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from echo.errors import ConfigError, EchoError
from echo.loop.config import LoopConfig
from echo.progress import bar, say


class LoopError(EchoError):
    """The loop cannot go on (e.g. a round harvested too few pairs to train on)."""


def _log(cfg: LoopConfig, started: float) -> Callable[[str], None]:
    def log(msg: str) -> None:
        if not cfg.quiet:
            say(f"[loop {time.monotonic() - started:7.1f}s] {msg}")

    return log


def _proposer(cfg: LoopConfig, path: str, model_id: str) -> Any:
    from echo.simulate.proposers import TransformersProposer

    return TransformersProposer(
        path, model_id, fim=cfg.fim_mode == "psm", max_new_tokens=cfg.max_new_tokens, max_lines=1,
        max_prompt_tokens=max(32, cfg.n_positions - cfg.max_new_tokens - 80),
        max_suffix_tokens=max(16, cfg.n_positions // 4), batch_size=16,
        max_prefix_chars=cfg.prefix_chars, max_suffix_chars=cfg.suffix_chars,
    )  # fmt: skip


def _sim_config(cfg: LoopConfig, **kw: Any) -> Any:
    from echo.simulate.config import SimConfig

    return SimConfig(days=cfg.days, shards=1, workers=1, attention=cfg.attention,
                     session_minutes=cfg.session_minutes, sessions_per_day=cfg.sessions_per_day, **kw)


def _train(cfg: LoopConfig, shards: Path, model: str, out: Path, name: str, objective: str = "sft") -> Any:
    from echo.train import TrainConfig, train

    return train(TrainConfig(
        shards=str(shards), model=model, out=str(out), objective=objective, num_workers=cfg.num_workers,
        cpus_per_worker=0.5, zero_stage=cfg.zero_stage, max_steps=cfg.train_steps, lr=cfg.train_lr,
        warmup_steps=min(5, cfg.train_steps // 4), micro_batch_size=cfg.micro_batch_size,
        max_seq_len=cfg.max_seq_len, max_completion_tokens=min(64, cfg.max_seq_len // 4),
        seed=cfg.seed, run_name=name, log_every=max(1, cfg.train_steps // 4),
    ))  # fmt: skip


def _comparisons(ids: list[str], r: int) -> list[tuple[str, str]]:
    """The paired differences a round reports: Echo minus every other arm, and each
    Echo variant minus the plain raw-log arm."""
    echo = f"echo-r{r}"
    out = [(echo, i) for i in ids if i != echo]
    raw = f"raw-accepted-r{r}"
    if raw in ids:
        out += [(i, raw) for i in ids if i.startswith("echo+")]
    return out


def _signal_rows(shards_report: dict[str, Any], signal: str) -> int:
    """Harvested training rows of a signal: ``kto`` / ``pref`` shard rows, or the
    typed-instead preference pairs."""
    if signal == "typed":
        return int(shards_report.get("pref_rows_by_source", {}).get("typed", 0))
    return int(shards_report.get("rows", {}).get(signal, {}).get("train", 0))


def _train_arm(
    cfg: LoopConfig, name: str, shards_dir: Path, hlake: Path, rdir: Path, start: str, r: int,
    shards_report: dict[str, Any],
) -> dict[str, Any]:
    """Fine-tune one arm from the round's starting model on the round's telemetry; a dict
    with ``skipped`` (the reason) when the harvest has too few rows of its signal."""
    from echo.loop import pipeline
    from echo.loop.config import ARMS

    arm = ARMS[name]
    assert arm.objective is not None, name
    need = cfg.micro_batch_size * cfg.num_workers
    if arm.needs is not None and (have := _signal_rows(shards_report, arm.needs)) < need:
        return {"skipped": f"{have} {arm.needs} training rows harvested, {need} needed",
                "objective": arm.objective, "target": arm.help}  # fmt: skip
    info: dict[str, Any] = {}
    shards = shards_dir
    if arm.shards is not None:
        shards = rdir / "harvest" / f"shards-{name}"
        info = pipeline.ablation_shards(shards_dir, hlake, shards, arm.shards)
    res = _train(cfg, shards, start, rdir / "train" / name, f"{name}-r{r}", arm.objective)
    return {**_train_summary(res), "target": arm.help, "objective": arm.objective, **info}


def _train_summary(res: Any) -> dict[str, Any]:
    return {
        "model_path": res.model_path,
        "checkpoint_path": res.checkpoint_path,
        "steps": res.steps,
        "finished": res.finished,
        "tokens": int(sum(int(m.get("tokens", 0)) for m in res.metrics)),
        "loss": [float(m["loss"]) for m in res.metrics],
    }


def run_loop(cfg: LoopConfig) -> dict[str, Any]:
    """Run the whole experiment; returns the results dict (also written by the report)."""
    from echo.loop import pipeline, stats
    from echo.loop.project import public_files, write_project
    from echo.loop.static import pretrain_static
    from echo.simulate.api import simulate
    from echo.simulate.config import FaultConfig
    from echo.simulate.corpus import Corpus
    from echo.spark import spark_session

    started = time.monotonic()
    log = _log(cfg, started)
    out = Path(cfg.out).resolve()
    if (out / "results.json").exists() or any(out.glob("round-*")):
        raise ConfigError(f"{out} already holds a loop run; remove it or pass another --out")
    out.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}

    def lap(name: str, t0: float) -> None:
        timings[name] = round(time.monotonic() - t0, 1)

    t0 = time.monotonic()
    project = write_project(out / "corpus", files=cfg.project_files, seed=cfg.seed)
    log(f"project corpus: {project.harvest_files} harvest + {project.heldout_files} held-out files")
    static = pretrain_static(
        out / "models" / "static", corpus=Corpus.from_dir(cfg.static_corpus or None),
        model_config={"model_type": "gpt2", "n_layer": cfg.n_layer, "n_embd": cfg.n_embd,
                      "n_head": cfg.n_head, "n_positions": cfg.n_positions},
        steps=cfg.static_steps, batch_size=cfg.static_batch, lr=cfg.static_lr, max_files=cfg.static_files,
        vocab_size=cfg.vocab_size, seed=cfg.seed, prefix_chars=cfg.prefix_chars,
        suffix_chars=cfg.suffix_chars, extra_texts=public_files(cfg.static_public_files, seed=cfg.seed + 1),
        extra_share=cfg.static_public_share, fim_mode=cfg.fim_mode, log=log, progress=not cfg.quiet,
    )  # fmt: skip
    lap("static_pretraining_s", t0)
    log(f"static model: {static.params:,} params, {static.steps} steps, loss {static.losses[-1]:.3f}")
    results: dict[str, Any] = {
        "config": cfg.to_dict(),
        "static": {"model_path": static.model_path, "files": static.files, "steps": static.steps,
                   "tokens": static.tokens, "params": static.params, "loss": static.losses},
        "project": {"root": str(project.root), "harvest_files": project.harvest_files,
                    "heldout_files": project.heldout_files},
        "rounds": [],
    }  # fmt: skip
    faults = FaultConfig(faults=cfg.faults)
    current, current_id = static.model_path, "static"
    with spark_session("echo-loop") as spark:
        for r in bar("loop", cfg.rounds, "rounds", quiet=cfg.quiet, items=range(1, cfg.rounds + 1)):
            rdir = out / f"round-{r}"
            rec: dict[str, Any] = {"round": r, "deployed": current_id}
            # 1-2. deploy the current model to fresh harvest users; the real pipeline
            t0 = time.monotonic()
            sim = simulate(
                _sim_config(cfg, users=cfg.harvest_users, seed=cfg.seed * 1000 + r, user_prefix=f"h{r}",
                            corpus=str(project.harvest), batches=cfg.batches),
                faults, out=rdir / "harvest" / "events", proposer=_proposer(cfg, current, current_id),
            )  # fmt: skip
            lap(f"round{r}_harvest_simulate_s", t0)
            log(f"round {r}: harvest users saw {sim.summary['truth']['suggestions']:,} proposals of {current_id}")
            t0 = time.monotonic()
            hlake, shards_dir = rdir / "harvest" / "lake", rdir / "harvest" / "shards"
            rec["harvest_pipeline"] = pipeline.run_pipeline(
                spark, sim.batch_dirs, hlake, pairs=True, shards_out=shards_dir,
                prefix_chars=cfg.prefix_chars, suffix_chars=cfg.suffix_chars, fim_mode=cfg.fim_mode, quiet=cfg.quiet,
            )  # fmt: skip
            lap(f"round{r}_harvest_pipeline_s", t0)
            rec["harvest"] = {"users": cfg.harvest_users, "user_prefix": f"h{r}",
                              "metrics": stats.model_metrics(hlake), "pairs": stats.pairs_harvested(hlake)}  # fmt: skip
            log(f"round {r}: {rec['harvest']['pairs']['total']} pairs harvested")
            n_train = rec["harvest"]["pairs"].get("split:train", 0)
            if n_train < cfg.micro_batch_size * cfg.num_workers:
                raise LoopError(
                    f"round {r}: only {n_train} training pairs harvested (accepted suggestions of "
                    f"{current_id}); raise --harvest-users/--session-minutes or pretrain longer"
                )
            # 3. fine-tune Echo and the ablations on the same telemetry
            arms: dict[str, str] = {"static": static.model_path}
            rec["training"] = {}
            t0 = time.monotonic()
            echo_res = _train(cfg, shards_dir, current, rdir / "train" / "echo", f"echo-r{r}")
            rec["training"]["echo"] = {**_train_summary(echo_res), "target": "final text (refined)"}
            arms[f"echo-r{r}"] = echo_res.model_path
            lap(f"round{r}_train_echo_s", t0)
            log(f"round {r}: Echo model trained ({echo_res.steps} steps)")
            for ab in cfg.ablations:
                if ab == "none":
                    arms.setdefault(f"none-r{r}" if current_id != "static" else "static", current)
                    continue
                t0 = time.monotonic()
                trained = _train_arm(cfg, ab, shards_dir, hlake, rdir, current, r, rec["harvest_pipeline"]["shards"])
                rec["training"][ab] = trained
                if trained.get("model_path"):
                    arms[f"{ab}-r{r}"] = trained["model_path"]
                else:
                    log(f"round {r}: arm {ab} skipped: {trained['skipped']}")
                lap(f"round{r}_train_{ab}_s", t0)
            # 4. measure every arm on the same fresh held-out users (paired design)
            t0 = time.monotonic()
            ids = list(arms)
            edirs: list[Path] = []
            for k, i in enumerate(ids):
                esim = simulate(
                    _sim_config(cfg, users=cfg.eval_users, seed=cfg.seed * 1000 + 500 + r,
                                user_prefix=f"e{r}.a{k}", cohort=f"e{r}", corpus=str(project.heldout), batches=1),
                    faults, out=rdir / "eval" / "events" / f"a{k}", proposer=_proposer(cfg, arms[i], i),
                )  # fmt: skip
                edirs += esim.batch_dirs
            lap(f"round{r}_eval_simulate_s", t0)
            t0 = time.monotonic()
            elake = rdir / "eval" / "lake"
            rec["eval_pipeline"] = pipeline.run_pipeline(
                spark, edirs, elake, pairs=False, quiet=cfg.quiet, together=True
            )
            lap(f"round{r}_eval_pipeline_s", t0)
            people = stats.per_person(elake)
            rec["eval"] = {
                "users": cfg.eval_users, "cohort": f"e{r}", "lake": str(elake),
                "arms": {i: arms[i] for i in ids}, "user_prefixes": {i: f"e{r}.a{k}" for k, i in enumerate(ids)},
                "metrics": stats.model_metrics(elake),
                "paired": {
                    f"{a} - {b}": {"a": a, "b": b, **stats.paired_difference(
                        people.get(a, {}), people.get(b, {}), resamples=cfg.resamples, seed=cfg.seed + r
                    )}
                    for a, b in _comparisons(ids, r)
                },
            }  # fmt: skip
            if cfg.forecast:
                t0 = time.monotonic()
                ef = pipeline.early_forecast(spark, elake, epochs=cfg.forecast_epochs, seed=cfg.seed + r, quiet=cfg.quiet)
                rec["eval"]["early_forecast"] = ef
                lap(f"round{r}_forecast_s", t0)
                log(f"round {r}: early forecast: " + (ef["skipped"] if "skipped" in ef else
                    f"{ef['open']} suggestions open at the backtest time, {ef['train']} trained on"))  # fmt: skip
            for i in ids:
                m = rec["eval"]["metrics"].get(i)
                if m:
                    log(f"round {r}: {i}: acceptance {m['acceptance']:.1%} "
                        f"[{m['ci95'][0]:.1%}, {m['ci95'][1]:.1%}] of {m['shown']:,}")  # fmt: skip
            for key, d in rec["eval"]["paired"].items():
                log(f"round {r}: {key}: {d['diff']:+.1%} [{d['ci95'][0]:+.1%}, {d['ci95'][1]:+.1%}] "
                    f"(paired, {d['people']} users)")  # fmt: skip
            results["rounds"].append(rec)
            current, current_id = echo_res.model_path, f"echo-r{r}"
    timings["total_s"] = round(time.monotonic() - started, 1)
    results["timings"] = timings
    (out / "results.json").write_text(json.dumps(results, indent=2, default=str), encoding="utf-8")
    return results
