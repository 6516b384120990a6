"""MLflow tracking of train, evaluate and loop, against a real local store read back
with ``MlflowClient``."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from echo.tracking import TrackingConfig, log_loop, tracked

mlflow = pytest.importorskip("mlflow")


def _client(uri: str) -> Any:
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri)


def _runs(uri: str, experiment: str) -> list[Any]:
    client = _client(uri)
    exp = client.get_experiment_by_name(experiment)
    assert exp is not None
    return list(client.search_runs([exp.experiment_id]))


def test_without_a_tracking_uri_nothing_is_tracked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    with tracked(TrackingConfig(), "x", command="train") as run:
        assert run is None


def test_the_environment_uri_is_used_when_no_setting_is_given(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    uri = f"sqlite:///{tmp_path / 'env.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    with tracked(TrackingConfig(experiment="env"), "from-env", command="evaluate") as run:
        assert run is not None
        run.metrics({"m": 1.5})
    (r,) = _runs(uri, "env")
    assert r.data.metrics == {"m": 1.5} and r.data.tags["echo.command"] == "evaluate"


def test_a_tracked_block_leaves_the_process_tracking_uri_as_it_found_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """mlflow.set_tracking_uri exports MLFLOW_TRACKING_URI; a later command of the same
    process (a notebook cell, a subprocess it starts) must not inherit the block's store."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    uri = f"sqlite:///{tmp_path / 'one.db'}"
    with tracked(TrackingConfig(tracking_uri=uri, experiment="one"), "one", command="train") as run:
        assert run is not None and os.environ.get("MLFLOW_TRACKING_URI") == uri
    assert "MLFLOW_TRACKING_URI" not in os.environ
    outer = f"sqlite:///{tmp_path / 'outer.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", outer)
    with tracked(TrackingConfig(tracking_uri=uri, experiment="one"), "two", command="train"):
        pass
    assert os.environ["MLFLOW_TRACKING_URI"] == outer and mlflow.get_tracking_uri() == outer


def test_loop_logs_each_arm_with_its_acceptance_interval(tmp_path: Path) -> None:
    """``log_loop`` on results of the loop's shape (the loop itself runs in test_loop.py)."""
    uri = f"sqlite:///{tmp_path / 'loop.db'}"
    report = tmp_path / "report.md"
    report.write_text("# report\n")
    results = {"table": [
        {"round": 0, "model": "static", "acceptance": 0.31, "ci95": [0.27, 0.35], "shown": 512},
        {"round": 1, "model": "echo", "acceptance": 0.42, "ci95": [0.38, 0.46], "shown": 498},
        {"round": 1, "model": "echo+kto-r1", "acceptance": 0.44, "ci95": [0.40, 0.48], "shown": 501},
    ], "paired": [
        {"round": 1, "comparison": "echo+kto-r1 - echo", "diff": 0.02, "ci95": [-0.01, 0.05], "people": 36},
    ]}  # fmt: skip
    with tracked(
        TrackingConfig(tracking_uri=uri, experiment="loop"), "loop", command="loop"
    ) as run:
        assert run is not None
        log_loop(run, {"rounds": 1, "seed": 0, "ablations": ["no-scrub"]}, results, {"md": report})
    runs = {r.info.run_name: r for r in _runs(uri, "loop")}
    parent = runs["loop"]
    assert parent.data.params["rounds"] == "1" and parent.data.params["ablations"] == '["no-scrub"]'
    assert parent.data.metrics["acceptance.round1.echo"] == 0.42
    # MLflow refuses "+" in a metric key: arm names are spelled in its characters
    assert parent.data.metrics["acceptance.round1.echo_kto-r1"] == 0.44
    assert parent.data.metrics["paired.round1.echo_kto-r1 - echo.ci95_low"] == -0.01
    arm = runs["round 1 echo"]
    assert arm.data.tags["mlflow.parentRunId"] == parent.info.run_id
    assert arm.data.metrics == {
        "acceptance": 0.42,
        "ci95_low": 0.38,
        "ci95_high": 0.46,
        "shown": 498.0,
    }
    assert [a.path for a in _client(uri).list_artifacts(parent.info.run_id, "report")] == [
        "report/report.md"
    ]
    # a sqlite store keeps its artifacts next to the database, not in ./mlruns of the cwd
    assert list((tmp_path / "mlartifacts").rglob("report.md"))


# --- train and evaluate: a real (tiny) Ray Train run ----------------------------------


@dataclass(frozen=True)
class SeenSteps:
    """A ``before_step`` hook: rank 0 writes down which steps' ``loss`` the MLflow run
    holds before each optimizer step (one JSON list per step)."""

    uri: str
    run_id: str
    out: str

    def __call__(self, step: int, rank: int) -> None:
        if rank != 0:
            return
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        history = _client(self.uri).get_metric_history(self.run_id, "loss")
        with open(self.out, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(sorted(m.step for m in history)) + "\n")


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[None]:
    ray = pytest.importorskip("ray")
    ray.init(
        num_cpus=2, include_dashboard=False, runtime_env={"env_vars": {"DS_ACCELERATOR": "cpu"}}
    )
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def tracked_train(ray_cluster: None, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    from echo.cli import main as echo_main
    from echo.train.synthetic import TINY_LLAMA, write_synthetic_shards

    root = tmp_path_factory.mktemp("tracked")
    write_synthetic_shards(root / "shards", n_train=16, n_val=4, n_test=2)
    (root / "tiny.json").write_text(json.dumps(TINY_LLAMA), encoding="utf-8")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    out = root / "run"
    rc = echo_main([
        "train", "--shards", str(root / "shards"), "--model", str(root / "tiny.json"), "--out", str(out),
        "--objective", "sft", "--num-workers", "1", "--max-steps", "3", "--micro-batch-size", "4",
        "--warmup-steps", "1", "--seed", "1", "--tracking-uri", uri, "--experiment", "tiny",
    ])  # fmt: skip
    assert rc == 0
    return {"root": root, "uri": uri, "out": out, "shards": root / "shards"}


@pytest.mark.train
def test_train_logs_config_step_metrics_data_tags_and_model(tracked_train: dict[str, Any]) -> None:
    from echo.shards.manifest import load_manifest
    from echo.train.metrics import read_metrics

    uri = tracked_train["uri"]
    (run,) = _runs(uri, "tiny")
    assert run.info.status == "FINISHED"
    assert run.data.params["objective"] == "sft" and run.data.params["max_steps"] == "3"
    manifest = load_manifest(tracked_train["shards"])
    assert run.data.tags["echo.manifest_sha256"] == manifest.sha256
    history = _client(uri).get_metric_history(run.info.run_id, "loss")
    logged = read_metrics(tracked_train["out"] / "metrics.jsonl")
    assert [(m.step, m.value) for m in history] == [
        (r["step"], pytest.approx(r["loss"])) for r in logged
    ]
    assert {m.step for m in _client(uri).get_metric_history(run.info.run_id, "tokens_per_s")} == {
        1,
        2,
        3,
    }
    artifacts = {a.path for a in _client(uri).list_artifacts(run.info.run_id, "model")}
    assert "model/config.json" in artifacts


@pytest.mark.train
def test_evaluate_logs_the_scores_it_reports(tracked_train: dict[str, Any], tmp_path: Path) -> None:
    from echo.cli import main as echo_main

    uri, out = tracked_train["uri"], tmp_path / "eval.json"
    rc = echo_main([
        "evaluate", "--model", str(tracked_train["out"] / "model"), "--shards", str(tracked_train["shards"]),
        "--max-new-tokens", "4", "--out", str(out), "--tracking-uri", uri, "--experiment", "tiny-eval",
    ])  # fmt: skip
    assert rc == 0
    report = json.loads(out.read_text())
    (run,) = _runs(uri, "tiny-eval")
    assert run.data.metrics["model_metrics.edit_similarity"] == pytest.approx(
        report["model_metrics"]["edit_similarity"]
    )
    assert run.data.metrics["pairs"] == report["pairs"]
    assert run.data.tags["echo.manifest_sha256"] == report["manifest_sha256"]
    assert [a.path for a in _client(uri).list_artifacts(run.info.run_id)] == ["eval.json"]


@pytest.mark.slow  # tracked training stays in the default run (config, step metrics, data, model)
@pytest.mark.train
def test_train_logs_each_step_while_it_runs_to_a_file_store(
    tracked_train: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ray import cloudpickle

    from echo.train import TrainConfig, train

    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers cannot import tests
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3: the file store on request
    uri, seen = (tmp_path / "mlruns").as_uri(), tmp_path / "seen.jsonl"
    cfg = TrainConfig(
        shards=str(tracked_train["shards"]), model=str(tracked_train["root"] / "tiny.json"),
        out=str(tmp_path / "run"), objective="sft", num_workers=1, max_steps=3, micro_batch_size=4,
        seed=1, run_name="live",
    )  # fmt: skip
    with tracked(
        TrackingConfig(tracking_uri=uri, experiment="live"), "live", command="train"
    ) as run:
        assert run is not None
        train(cfg, before_step=SeenSteps(uri, run.run_id, str(seen)), after_step=run.live_metrics())
    # before step k+1 the run already held steps 1..k: logged as they ended, not at the end
    assert [json.loads(line) for line in seen.read_text().splitlines()] == [[], [1], [1, 2]]
    (logged,) = _runs(uri, "live")
    assert [m.step for m in _client(uri).get_metric_history(logged.info.run_id, "lr")] == [1, 2, 3]
