"""MLflow tracking of ``train``, ``evaluate`` and ``loop`` (when a tracking URI is set).

    echo-pipeline train ... --tracking-uri sqlite:///runs/mlflow.db
    MLFLOW_TRACKING_URI=http://mlflow.internal:5000 echo-pipeline evaluate ...
    mlflow ui --backend-store-uri sqlite:///runs/mlflow.db      # browse the runs

The URI is ``--tracking-uri`` (or ``tracking_uri`` in ``--config``), else the environment's
``MLFLOW_TRACKING_URI``; with neither, nothing is tracked and mlflow is not imported. Any
URI MLflow takes works: ``sqlite:``, a tracking server, ``databricks``, and ``file:`` (MLflow 3
puts the file store in maintenance mode: it wants ``MLFLOW_ALLOW_FILE_STORE=true``). The
demo logs to ``sqlite:///<out>/mlflow.db`` unless told otherwise.

What is logged:

- ``train``: parameters (the resolved config), metrics per optimizer step from rank 0
  (``loss``, ``lr``, ``tokens_per_s``, ``mfu``, ``step_time_s``, and ``dpo_margin`` for
  DPO) with their step numbers, logged live as each step ends (:class:`LiveMetrics`, the
  ``after_step`` hook of :func:`echo.train.trainer.train`; steps it could not log are
  filled in from ``metrics.jsonl`` when the run has finished);
  tags ``echo.manifest_sha256`` and ``echo.source.<table>`` (the lake table versions the
  shards were built from); the final Hugging Face model as artifact ``model/``.
- ``evaluate``: parameters, the model's and the deployed proposals' scores and their
  difference, the same tags, the report as artifact.
- ``loop``: parameters, one nested run per arm (round × model) with ``acceptance``, its
  95% interval (``ci95_low``, ``ci95_high``) and ``shown``; the report as artifacts.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from echo.config import Validated, setting
from echo.errors import ConfigError

#: MLflow refuses parameter values longer than this (6000 in older servers).
MAX_PARAM_CHARS = 6000
#: Per-step metrics of a training run (rank 0's metrics.jsonl columns).
STEP_METRICS = ("loss", "lr", "tokens_per_s", "mfu", "step_time_s", "dpo_margin")


@dataclass(frozen=True)
class TrackingConfig(Validated):
    """Experiment tracking (MLflow)."""

    tracking_uri: str = setting(
        "",
        "MLflow tracking URI (file:, sqlite:, http(s)://, databricks); empty: the environment's "
        "MLFLOW_TRACKING_URI, and without it nothing is tracked",
    )
    experiment: str = setting("echo", "MLflow experiment the runs go to")

    def validate(self) -> None:
        if not self.experiment:
            raise ConfigError("--experiment must name an MLflow experiment")


def tracking_uri(cfg: TrackingConfig) -> str:
    return cfg.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI", "")


def _flat(prefix: str, value: Any, out: dict[str, str]) -> None:
    if isinstance(value, Mapping):
        for k, v in value.items():
            _flat(f"{prefix}.{k}" if prefix else str(k), v, out)
    else:
        text = value if isinstance(value, str) else json.dumps(value, default=str)
        out[prefix] = text[:MAX_PARAM_CHARS]


def flat_params(params: Mapping[str, Any]) -> dict[str, str]:
    """Nested settings as MLflow parameters: ``a.b = value`` (JSON for lists)."""
    out: dict[str, str] = {}
    _flat("", params, out)
    return out


def manifest_tags(shards: str | Path) -> dict[str, str]:
    """``echo.manifest_sha256`` and ``echo.source.<table>`` of a shards directory."""
    from echo.shards.manifest import load_manifest

    manifest = load_manifest(shards)
    tags = {"echo.manifest_sha256": manifest.sha256, "echo.shards": str(shards)}
    for key, value in flat_params(manifest.source).items():
        tags[f"echo.source.{key}"] = value
    return tags


class Tracker:
    """One active MLflow run (a thin layer over the ``mlflow`` module)."""

    def __init__(self, mlflow: Any, run: Any) -> None:
        self.mlflow = mlflow
        self.run = run

    @property
    def run_id(self) -> str:
        return str(self.run.info.run_id)

    def params(self, params: Mapping[str, Any]) -> None:
        flat = flat_params(params)
        items = list(flat.items())
        for i in range(0, len(items), 100):  # MLflow takes at most 100 params per batch
            self.mlflow.log_params(dict(items[i : i + 100]))

    def tags(self, tags: Mapping[str, str]) -> None:
        self.mlflow.set_tags(dict(tags))

    def metrics(self, values: Mapping[str, float | int | None], step: int | None = None) -> None:
        clean = {
            k: float(v)
            for k, v in values.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool)
        }
        if clean:
            self.mlflow.log_metrics(clean, step=step)

    def step_metrics(self, rows: list[dict[str, Any]]) -> None:
        """Per-step training metrics, each at its optimizer step; steps whose ``loss`` the
        run already holds (logged live) are not logged again."""
        from mlflow.tracking import MlflowClient

        history = MlflowClient(self.mlflow.get_tracking_uri()).get_metric_history(
            self.run_id, "loss"
        )
        logged = {m.step for m in history}
        for row in rows:
            if int(row["step"]) not in logged:
                self.metrics({k: row.get(k) for k in STEP_METRICS}, step=int(row["step"]))

    def live_metrics(self) -> LiveMetrics:
        """The hook that logs rank 0's metrics of each step into this run as it ends."""
        return LiveMetrics(
            str(self.mlflow.get_tracking_uri()), self.run_id, os.environ.get(FILE_STORE_ENV, "")
        )

    def artifacts(self, path: str | Path, artifact_path: str | None = None) -> None:
        p = Path(path)
        if p.is_dir():
            self.mlflow.log_artifacts(str(p), artifact_path)
        elif p.is_file():
            self.mlflow.log_artifact(str(p), artifact_path)

    @contextmanager
    def child(self, name: str) -> Iterator[Tracker]:
        with self.mlflow.start_run(run_name=name, nested=True) as run:
            yield Tracker(self.mlflow, run)


#: MLflow 3 refuses a ``file:`` store unless this is "true"
FILE_STORE_ENV = "MLFLOW_ALLOW_FILE_STORE"


@dataclass
class LiveMetrics:
    """``after_step`` hook of a training run: rank 0 logs each step's metrics row
    (:data:`STEP_METRICS`) into the run ``run_id`` as the step ends, with its own MLflow
    client (the hook is pickled to the worker). A store that fails is said once on stderr
    and not tried again; the driver fills in the missing steps at the end."""

    uri: str
    run_id: str
    file_store: str = ""  # the driver's MLFLOW_ALLOW_FILE_STORE, for the worker's process
    _client: Any = field(default=None, init=False, repr=False, compare=False)
    _broken: bool = field(default=False, init=False, repr=False, compare=False)

    def __getstate__(self) -> dict[str, Any]:
        return {"uri": self.uri, "run_id": self.run_id, "file_store": self.file_store}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(**state)  # type: ignore[misc]

    def __call__(self, row: Mapping[str, Any]) -> None:
        if self._broken:
            return
        try:
            from mlflow.entities import Metric

            if self._client is None:
                if self.file_store:
                    os.environ.setdefault(FILE_STORE_ENV, self.file_store)
                from mlflow.tracking import MlflowClient

                _quiet_mlflow()
                self._client = MlflowClient(tracking_uri=self.uri)
            ts, step = int(time.time() * 1000), int(row["step"])
            metrics = [
                Metric(k, float(v), ts, step)
                for k in STEP_METRICS
                if isinstance(v := row.get(k), (int, float)) and not isinstance(v, bool)
            ]
            if metrics:
                self._client.log_batch(self.run_id, metrics=metrics)
        except Exception as exc:  # tracking must not end a training run
            self._broken = True
            msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            print(f"[echo.train] MLflow live metrics off: {msg}", file=sys.stderr, flush=True)


@contextmanager
def tracked(cfg: TrackingConfig, run_name: str, *, command: str) -> Iterator[Tracker | None]:
    """An MLflow run for the block, or None when no tracking URI is configured. A failed
    block ends the run as FAILED."""
    uri = tracking_uri(cfg)
    if not uri:
        yield None
        return
    try:
        import mlflow
    except ImportError:
        raise ConfigError(
            f"a tracking URI is set ({uri}) but mlflow is not installed; install the 'train' extra"
        ) from None
    _quiet_mlflow()
    # mlflow.set_tracking_uri also exports MLFLOW_TRACKING_URI (for its subprocesses): the
    # block's URI must not outlive it in this process (a notebook, the next command of a test)
    before = os.environ.get(URI_ENV)
    mlflow.set_tracking_uri(uri)
    try:
        try:
            if mlflow.get_experiment_by_name(cfg.experiment) is None and uri.startswith(
                "sqlite:///"
            ):
                # artifacts next to the database, not in ./mlruns of the working directory
                store = Path(uri[len("sqlite:///") :]).resolve().parent / "mlartifacts"
                mlflow.create_experiment(cfg.experiment, artifact_location=store.as_uri())
            mlflow.set_experiment(cfg.experiment)
        except Exception as exc:  # unreachable server, bad store: one line
            raise ConfigError(f"MLflow tracking URI {uri}: {str(exc).splitlines()[0]}") from None
        with mlflow.start_run(run_name=run_name, tags={"echo.command": command}) as run:
            yield Tracker(mlflow, run)
    finally:
        _restore_tracking_uri(mlflow, before)


#: the environment variable MLflow reads (and, through set_tracking_uri, writes)
URI_ENV = "MLFLOW_TRACKING_URI"


def _restore_tracking_uri(mlflow: Any, before: str | None) -> None:
    """Put MLflow's process-wide tracking URI (and its environment variable) back as the
    caller had it."""
    if before is not None:
        mlflow.set_tracking_uri(before)
        os.environ[URI_ENV] = before
        return
    # an MLflow that refuses None: the variable is dropped below; the default store follows
    with contextlib.suppress(Exception):
        mlflow.set_tracking_uri(None)  # unsets the variable as well
    os.environ.pop(URI_ENV, None)


def _quiet_mlflow() -> None:
    """MLflow's own logging (alembic migrations, run links) to the command's log file."""
    import logging

    from echo.logs import current

    path = current()
    for name in ("mlflow", "alembic"):
        logger = logging.getLogger(name)
        if path is not None:
            logger.handlers = [logging.FileHandler(path, encoding="utf-8")]
            logger.propagate = False
        else:
            logger.setLevel(logging.WARNING)


def log_train_start(run: Tracker, config: Mapping[str, Any], shards: str) -> None:
    run.params(config)
    run.tags(manifest_tags(shards))


def log_train_result(run: Tracker, result: Any) -> None:
    """Per-step metrics (rank 0), the final state and the Hugging Face model."""
    run.step_metrics(result.metrics)
    run.metrics({"final_loss": result.final.get("loss"), "steps": result.steps})
    run.tags(
        {
            "echo.finished": str(bool(result.finished)).lower(),
            "echo.checkpoint": str(result.checkpoint_path),
        }
    )
    run.artifacts(result.model_path, "model")
    run.artifacts(Path(result.model_path).parent / "train_result.json")


def log_evaluation(run: Tracker, args: Mapping[str, Any], report: Mapping[str, Any]) -> None:
    run.params({k: v for k, v in args.items() if k not in ("tracking_uri", "experiment", "config")})
    run.tags(manifest_tags(str(args["shards"])))
    run.metrics({"pairs": report.get("pairs")})
    for group in ("model_metrics", "proposal_metrics", "delta"):
        run.metrics({f"{group}.{k}": v for k, v in dict(report.get(group) or {}).items()})
    if args.get("out"):
        run.artifacts(str(args["out"]))
    else:
        run.mlflow.log_dict(dict(report), "evaluation.json")


def metric_name(name: str) -> str:
    """``name`` in the characters MLflow allows in a metric key (letters, digits, ``_ - . /``
    and space): arm names such as ``echo+kto-r1`` become ``echo_kto-r1``."""
    return re.sub(r"[^\w\-. /]", "_", name)


def log_loop(
    run: Tracker, config: Mapping[str, Any], results: Mapping[str, Any], paths: Mapping[str, Any]
) -> None:
    """Parameters, one nested run per arm (acceptance with its 95% interval), the report."""
    run.params(config)
    for row in results.get("table", []):
        with run.child(f"round {row['round']} {row['model']}") as arm:
            arm.tags({"echo.round": str(row["round"]), "echo.model": str(row["model"])})
            lo, hi = row["ci95"]
            arm.metrics(
                {
                    "acceptance": row["acceptance"],
                    "ci95_low": lo,
                    "ci95_high": hi,
                    "shown": row["shown"],
                }
            )
        key = metric_name(f"acceptance.round{row['round']}.{row['model']}")
        run.metrics({key: row["acceptance"], f"{key}.ci95_low": lo, f"{key}.ci95_high": hi})
    for p in results.get("paired", []):
        key = metric_name(f"paired.round{p['round']}.{p['comparison']}")
        lo, hi = p["ci95"]
        run.metrics({key: p["diff"], f"{key}.ci95_low": lo, f"{key}.ci95_high": hi})
    for f in results.get("early_forecast", []):
        key = metric_name(f"early_forecast.round{f['round']}.{f['model_id']}")
        vals = {f"{key}.{k}": f[k] for k in ("forecast_refine", "forecast_delete", "later_measured_refine",
                                              "later_measured_delete", "naive_refine", "naive_delete")}  # fmt: skip
        run.metrics({k: float(v) for k, v in vals.items() if v == v})  # NaN: none open for this arm
    for path in paths.values():
        run.artifacts(path, "report")
