"""End to end through Ray Train + DeepSpeed (2 CPU workers, gloo, ZeRO-2; one ZeRO-3 run)."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("ray.train")
pytest.importorskip("deepspeed")

import ray

from echo.cli import main as echo_main
from echo.train import TrainConfig, evaluate, train
from echo.train.metrics import read_metrics
from echo.train.synthetic import TINY_LLAMA, write_synthetic_shards
from echo.train.trainer import TrainError

pytestmark = pytest.mark.train
STEPS, STOP = 4, 2
# the hooks defined here travel to Ray's workers, which cannot import this test module
ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])


@dataclass(frozen=True)
class FailOnce:
    """A ``before_step`` hook: rank 0 fails before optimizer step ``step + 1``, once (the
    marker file remembers it across the restart of the workers)."""

    marker: str
    step: int

    def __call__(self, step: int, rank: int) -> None:
        if rank == 0 and step == self.step and not Path(self.marker).exists():
            Path(self.marker).write_text("fired", encoding="utf-8")
            raise RuntimeError(f"injected fault before step {step + 1}")


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[None]:
    env = {"DS_ACCELERATOR": "cpu"}
    ray.init(num_cpus=2, include_dashboard=False, runtime_env={"env_vars": env})
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("train")
    write_synthetic_shards(root / "shards", n_train=32, n_val=6, n_test=4)
    (root / "tiny.json").write_text(json.dumps(TINY_LLAMA), encoding="utf-8")
    return {"root": root, "shards": str(root / "shards"), "model": str(root / "tiny.json")}


def _config(base: dict[str, Any], out: str, **kw: Any) -> TrainConfig:
    values: dict[str, Any] = dict(
        shards=base["shards"],
        model=base["model"],
        out=out,
        objective="sft+dpo",
        num_workers=2,
        zero_stage=2,
        max_steps=STEPS,
        micro_batch_size=4,
        lr=3e-3,
        warmup_steps=1,
        seed=1,
    )
    values.update(kw)
    return TrainConfig(**values)


@pytest.fixture(scope="module")
def full_run(ray_cluster: None, base: dict[str, Any]) -> dict[str, Any]:
    """The uninterrupted run, through the CLI (in process: the module's Ray is reused)."""
    out = base["root"] / "full"
    rc = echo_main(
        [
            "train",
            "--shards",
            base["shards"],
            "--model",
            base["model"],
            "--out",
            str(out),
            "--objective",
            "sft+dpo",
            "--num-workers",
            "2",
            "--zero-stage",
            "2",
            "--max-steps",
            str(STEPS),
            "--micro-batch-size",
            "4",
            "--lr",
            "3e-3",
            "--warmup-steps",
            "1",
            "--seed",
            "1",
        ]
    )
    assert rc == 0
    return {"out": out, "summary": json.loads((out / "train_result.json").read_text())}


def test_cli_run_writes_per_step_metrics(full_run: dict[str, Any]) -> None:
    rows = read_metrics(full_run["out"] / "metrics.jsonl")
    assert [r["step"] for r in rows] == list(range(1, STEPS + 1))
    for r in rows:
        assert r["loss"] > 0 and r["tokens_per_s"] > 0 and r["lr"] > 0
        assert r["mfu"] is None  # CPU: no known peak
    assert rows[-1]["dpo_margin"] > rows[0]["dpo_margin"]
    assert rows[-1]["sft_loss"] < rows[0]["sft_loss"]


def test_checkpoint_holds_state_meta_and_ds_config(full_run: dict[str, Any]) -> None:
    ckpt = Path(full_run["summary"]["checkpoint_path"])
    meta = json.loads((ckpt / "meta.json").read_text())
    assert meta["step"] == STEPS and meta["finished"] is True
    assert meta["config"]["zero_stage"] == 2 and meta["config"]["objective"] == "sft+dpo"
    assert meta["manifest_sha256"] == full_run["summary"]["manifest_sha256"]
    assert meta["data_cursor"]["micro_batches"] == STEPS
    ds = json.loads((ckpt / "ds_config.json").read_text())
    assert ds["zero_optimization"]["stage"] == 2 and ds["train_batch_size"] == 8
    state = {p.name for p in (ckpt / "state").iterdir()}
    assert "mp_rank_00_model_states.pt" in state
    assert {
        "zero_pp_rank_0_mp_rank_00_optim_states.pt",
        "zero_pp_rank_1_mp_rank_00_optim_states.pt",
    } <= state


def test_saved_model_loads_in_plain_transformers_and_generates(full_run: dict[str, Any]) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = full_run["out"] / "model"
    tok = AutoTokenizer.from_pretrained(path)
    model: Any = AutoModelForCausalLM.from_pretrained(path)
    ids = tok(
        "<fim_prefix>def f(a, b):\n    <fim_suffix>\n<fim_middle>",
        return_tensors="pt",
        add_special_tokens=False,
    )
    assert ids["input_ids"].shape[1] > 3
    with torch.no_grad():
        out = model.generate(
            **ids, max_new_tokens=5, do_sample=False, pad_token_id=tok.pad_token_id
        )
    assert out.shape[1] > ids["input_ids"].shape[1]
    assert tok.convert_tokens_to_ids("<fim_middle>") != tok.unk_token_id


def test_resume_continues_with_the_same_losses(
    ray_cluster: None, base: dict[str, Any], full_run: dict[str, Any]
) -> None:
    out = str(base["root"] / "resumed")
    first = train(_config(base, out, run_name="interrupted", stop_after_steps=STOP))
    assert first.steps == STOP and not first.finished
    second = train(_config(base, out, run_name="interrupted"))  # same name + storage: resumes
    assert second.steps == STEPS and second.finished
    full = read_metrics(full_run["out"] / "metrics.jsonl")
    resumed = second.metrics
    assert [r["step"] for r in resumed] == list(range(1, STEPS + 1))
    for a, b in zip(full, resumed, strict=True):
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-4, abs=1e-5)
        assert b["lr"] == pytest.approx(a["lr"], rel=1e-6)
    meta = json.loads((Path(second.checkpoint_path) / "meta.json").read_text())
    assert meta["data_cursor"]["micro_batches"] == STEPS


def test_evaluate_compares_model_with_logged_proposals(
    full_run: dict[str, Any], base: dict[str, Any]
) -> None:
    report = evaluate(str(full_run["out"] / "model"), base["shards"], "val", max_new_tokens=12)
    assert report["pairs"] == 6
    for side in ("model_metrics", "proposal_metrics"):
        assert set(report[side]) == {"exact_match", "edit_similarity", "kept_share"}
        assert 0.0 <= report[side]["edit_similarity"] <= 1.0
    # the synthetic proposals differ from the final text by one operator: similar, never equal
    assert report["proposal_metrics"]["exact_match"] == 0.0
    assert report["proposal_metrics"]["kept_share"] == 1.0
    assert report["delta"]["edit_similarity"] == pytest.approx(
        report["model_metrics"]["edit_similarity"] - report["proposal_metrics"]["edit_similarity"]
    )


def test_worker_failure_without_max_failures_fails_the_run(
    ray_cluster: None, base: dict[str, Any]
) -> None:
    out = str(base["root"] / "fragile")
    hook = FailOnce(str(base["root"] / "fragile.fired"), 0)
    with pytest.raises(TrainError, match="injected fault before step 1") as info:
        train(_config(base, out, run_name="fragile", max_failures=0), before_step=hook)
    assert "\n" not in str(info.value)


@pytest.mark.slow  # a worker failure stays in the default run (without max_failures); resume from a checkpoint too
def test_worker_failure_is_recovered_from_the_latest_checkpoint(
    ray_cluster: None, base: dict[str, Any], full_run: dict[str, Any]
) -> None:
    """--max-failures 1: rank 0 dies before step 4; Ray Train restarts the workers from
    the step-2 checkpoint and the run ends with the uninterrupted run's losses."""
    marker = base["root"] / "flaky.fired"
    out = str(base["root"] / "flaky")
    hook = FailOnce(str(marker), 3)
    res = train(_config(base, out, run_name="flaky", checkpoint_every=2, max_failures=1), before_step=hook)
    assert marker.exists()  # it failed once
    assert res.finished and res.steps == STEPS
    full = read_metrics(full_run["out"] / "metrics.jsonl")
    assert [r["step"] for r in res.metrics] == list(range(1, STEPS + 1))
    for a, b in zip(full, res.metrics, strict=True):
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-4, abs=1e-5)


def test_zero3_saves_the_gathered_trained_weights(ray_cluster: None, base: dict[str, Any]) -> None:
    """ZeRO-3 on CPU: the HF model holds the full trained weights, not empty partitions."""
    import torch
    from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from echo.train.checkpoint import TAG
    from echo.train.model import build_model, resolve_model_spec, tokenizer_info

    out = base["root"] / "zero3"
    res = train(
        _config(base, str(out), run_name="zero3", objective="sft", zero_stage=3, max_steps=2)
    )
    assert res.finished and res.steps == 2
    meta = json.loads((Path(res.checkpoint_path) / "meta.json").read_text())
    assert meta["config"]["zero_stage"] == 3

    saved, info = AutoModelForCausalLM.from_pretrained(res.model_path, output_loading_info=True)
    assert not info["missing_keys"] and not info["mismatched_keys"]
    # the trained fp32 weights, rebuilt independently from the ranks' ZeRO-3 partitions
    trained = get_fp32_state_dict_from_zero_checkpoint(res.checkpoint_path, tag=TAG)
    tok = AutoTokenizer.from_pretrained(out / "tokenizer")
    init = build_model(resolve_model_spec(base["model"]).to_dict(), tokenizer_info(tok), seed=1)
    init_params = dict(init.named_parameters())
    names = [n for n, _ in saved.named_parameters()]
    assert names == list(init_params)
    for name, param in saved.named_parameters():
        assert param.numel() > 0 and param.shape == init_params[name].shape, name
        assert torch.equal(param, trained[name].to(param.dtype)), name
        assert not torch.equal(param, init_params[name]), f"{name} did not train"


@pytest.mark.slow
def test_lora_zero3_resumes_exactly_and_saves_adapter_and_merged_model(
    ray_cluster: None, base: dict[str, Any]
) -> None:
    """KTO with LoRA + gradient checkpointing under ZeRO-3: a run stopped after 2 steps
    and resumed ends with the uninterrupted run's losses; the merged model (plain
    transformers) and the adapter on its base (plain peft) give the same logits."""
    import torch
    from peft import AutoPeftModelForCausalLM
    from transformers import AutoModelForCausalLM, AutoTokenizer

    lora = dict(
        objective="kto", zero_stage=3, lora=True, lora_r=4, lora_alpha=8,
        gradient_checkpointing=True, lr=1e-2,
    )  # fmt: skip
    out = base["root"] / "lora3"
    full = train(_config(base, str(base["root"] / "lora3-full"), run_name="lora3-full", **lora))
    first = train(_config(base, str(out), run_name="lora3", stop_after_steps=STOP, **lora))
    assert first.steps == STOP and not first.finished
    res = train(_config(base, str(out), run_name="lora3", **lora))
    assert res.finished and res.steps == STEPS
    for a, b in zip(full.metrics, res.metrics, strict=True):
        assert b["kto_loss"] == pytest.approx(a["kto_loss"], rel=1e-4, abs=1e-6)
    meta = json.loads((Path(res.checkpoint_path) / "meta.json").read_text())
    assert meta["config"]["lora"] is True and meta["config"]["zero_stage"] == 3
    assert 0 < meta["trainable_params"] < meta["params"] // 4

    assert res.adapter_path == str(out / "adapter")
    tok = AutoTokenizer.from_pretrained(out / "model")
    merged = AutoModelForCausalLM.from_pretrained(out / "model").eval()
    adapted = AutoPeftModelForCausalLM.from_pretrained(out / "adapter").eval()  # base: out/base
    plain = AutoModelForCausalLM.from_pretrained(out / "base").eval()
    ids = tok(
        "<fim_prefix>def f(a, b):\n    <fim_suffix>\n<fim_middle>return a",
        return_tensors="pt",
        add_special_tokens=False,
    )
    with torch.no_grad():
        m, a, p = (x(**ids).logits for x in (merged, adapted, plain))
    assert torch.allclose(m, a, atol=1e-4)
    assert not torch.allclose(m, p, atol=1e-3)  # the adapter trained
