"""Pieces of the trainer without Ray: DeepSpeed config, MFU, resume checks, keep threshold."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from echo.errors import ConfigError, EchoError
from echo.train import TrainConfig
from echo.train.checkpoint import CheckpointError, check_meta
from echo.train.deepspeed_config import build_ds_config, resolve_precision
from echo.train.metrics import device_peak_flops, mfu

pytestmark = pytest.mark.train


def _cfg(**kw: Any) -> TrainConfig:
    return TrainConfig(shards="s", model="m", out="o", **kw)


# -- the bare loop's schedule -------------------------------------------------------------


def test_linear_schedule_warms_up_then_decays_to_its_floor() -> None:
    from echo.train.bare import lr_factor

    f = [lr_factor(s, 100, warmup_steps=10, schedule="linear", min_lr_ratio=0.1) for s in range(100)]
    assert f[0] == pytest.approx(0.1) and f[9] == pytest.approx(0.91)
    assert f[50] == pytest.approx(0.5) and f[99] == pytest.approx(0.1)


def test_cosine_schedule_ends_at_the_min_ratio() -> None:
    from echo.train.bare import lr_factor

    assert lr_factor(0, 10, schedule="cosine", min_lr_ratio=0.2) == pytest.approx(1.0)
    assert lr_factor(10, 10, schedule="cosine", min_lr_ratio=0.2) == pytest.approx(0.2)


def test_constant_schedule_without_warmup_is_the_peak() -> None:
    from echo.train.bare import lr_factor

    assert {lr_factor(s, 5) for s in range(5)} == {1.0}


# -- DeepSpeed config ----------------------------------------------------------------------


@pytest.mark.parametrize("stage", [0, 1])
def test_zero_stage_0_and_1_carry_only_the_stage(stage: int) -> None:
    ds = build_ds_config(_cfg(zero_stage=stage), world_size=2, steps=10, precision="fp32")
    assert ds["zero_optimization"] == {"stage": stage}


def test_zero_stage_2_adds_bucketed_reduce_scatter_and_overlap_on_gpu_only() -> None:
    cpu = build_ds_config(_cfg(zero_stage=2), world_size=2, steps=10, precision="fp32")
    gpu = build_ds_config(
        _cfg(zero_stage=2, use_gpu=True), world_size=2, steps=10, precision="bf16"
    )
    for ds in (cpu, gpu):
        z = ds["zero_optimization"]
        assert z["stage"] == 2 and z["contiguous_gradients"] and z["reduce_scatter"]
        assert not any(k.startswith("stage3_") for k in z)
    assert cpu["zero_optimization"]["overlap_comm"] is False
    assert gpu["zero_optimization"]["overlap_comm"] is True


def test_zero_stage_3_gathers_16bit_weights_on_save() -> None:
    z = build_ds_config(_cfg(zero_stage=3), world_size=2, steps=10, precision="fp32")[
        "zero_optimization"
    ]
    assert z["stage"] == 3 and z["stage3_gather_16bit_weights_on_model_save"] is True
    assert z["contiguous_gradients"] is True


@pytest.mark.parametrize(
    ("use_gpu", "precision", "bf16_hw", "expected"),
    [
        (False, "auto", True, "fp32"),  # CPU is always fp32
        (True, "auto", True, "bf16"),
        (True, "auto", False, "fp16"),
        (True, "fp16", True, "fp16"),  # forced
        (True, "fp32", True, "fp32"),
    ],
)
def test_precision_selection(use_gpu: bool, precision: str, bf16_hw: bool, expected: str) -> None:
    cfg = _cfg(use_gpu=use_gpu, precision=precision)
    resolved = resolve_precision(cfg, bf16_hw)
    assert resolved == expected
    ds = build_ds_config(cfg, world_size=1, steps=10, precision=resolved)
    assert ds["bf16"]["enabled"] is (expected == "bf16")
    assert ds["fp16"]["enabled"] is (expected == "fp16")


def test_half_precision_on_cpu_is_refused() -> None:
    with pytest.raises(ConfigError, match="needs --use-gpu"):
        _cfg(precision="bf16")


def test_batch_accumulation_and_clipping_keys() -> None:
    ds = build_ds_config(
        _cfg(micro_batch_size=4, grad_accum=3, clip_grad=0.5),
        world_size=2,
        steps=10,
        precision="fp32",
    )
    assert ds["train_micro_batch_size_per_gpu"] == 4
    assert ds["gradient_accumulation_steps"] == 3
    assert ds["train_batch_size"] == 4 * 3 * 2
    assert ds["gradient_clipping"] == 0.5
    off = build_ds_config(_cfg(clip_grad=0.0), world_size=1, steps=10, precision="fp32")
    assert off["gradient_clipping"] == 0.0


@pytest.mark.parametrize("stage", [0, 1, 2, 3])
def test_deepspeed_parses_the_config_as_intended(stage: int) -> None:
    """DeepSpeed's own config parser reads back the stage, batch math, precision, clipping."""
    os.environ.setdefault("DS_ACCELERATOR", "cpu")
    ds_config = pytest.importorskip("deepspeed.runtime.config")
    cfg = _cfg(zero_stage=stage, use_gpu=True, grad_accum=2, clip_grad=0.25, warmup_steps=2)
    parsed = ds_config.DeepSpeedConfig(
        build_ds_config(cfg, world_size=1, steps=10, precision="bf16")
    )
    assert parsed.zero_optimization_stage == stage
    assert parsed.train_batch_size == cfg.micro_batch_size * 2
    assert parsed.gradient_accumulation_steps == 2
    assert parsed.gradient_clipping == 0.25
    assert parsed.bfloat16_config.enabled and not parsed.float16_config.enabled
    assert parsed.optimizer_name == "adamw" and parsed.scheduler_name == "WarmupCosineLR"
    if stage == 3:
        assert parsed.zero_config.gather_16bit_weights_on_model_save


# -- MFU --------------------------------------------------------------------------------------


def test_mfu_with_a_given_peak() -> None:
    peak = device_peak_flops(None, override_tflops=100.0)
    assert peak == 100e12
    # 6 * 1e9 params * 5000 tok/s = 3e13 FLOP/s over 2 devices of 1e14 -> 15 %
    assert mfu(1_000_000_000, 5000.0, peak, 2) == pytest.approx(0.15)
    assert mfu(1_000_000_000, 5000.0, peak, 1) == pytest.approx(0.30)


def test_mfu_peak_lookup() -> None:
    assert device_peak_flops("NVIDIA H200") == 989e12
    assert device_peak_flops("NVIDIA A100-SXM4-80GB") == 312e12
    assert device_peak_flops("NVIDIA L40S") == 362e12  # not L4
    assert device_peak_flops("NVIDIA H100", override_tflops=50.0) == 50e12
    assert device_peak_flops(None) is None and device_peak_flops("Some CPU") is None
    assert mfu(10, 1.0, None, 2) is None


# -- resume checks ----------------------------------------------------------------------------


def test_check_meta_refuses_another_world_size_with_one_line() -> None:
    meta = {"manifest_sha256": "a" * 64, "world_size": 2}
    check_meta(meta, "ck", "a" * 64, 2)  # same shards and workers: fine
    with pytest.raises(CheckpointError, match=r"written by 2 workers.*--num-workers 1") as info:
        check_meta(meta, "ck", "a" * 64, 1)
    assert "\n" not in str(info.value)
    with pytest.raises(CheckpointError, match="other shards"):
        check_meta(meta, "ck", "b" * 64, 2)


def test_max_failures_setting_is_checked() -> None:
    assert _cfg(max_failures=-1).max_failures == -1
    with pytest.raises(ConfigError, match="max_failures"):
        _cfg(max_failures=-2)


def test_kto_needs_two_rows_per_micro_batch() -> None:
    _cfg(objective="kto", micro_batch_size=2)
    with pytest.raises(ConfigError, match="micro_batch_size >= 2"):
        _cfg(objective="sft+kto", micro_batch_size=1)
    _cfg(objective="sft", micro_batch_size=1)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"lora_r": 0}, "lora_r"),
        ({"lora_dropout": 1.0}, "lora_dropout"),
        ({"lora_target_modules": ()}, "lora_target_modules"),
        ({"kto_beta": 0.0}, "kto_beta"),
        ({"kto_undesirable_weight": -1.0}, "kto weights"),
    ],
)
def test_lora_and_kto_settings_are_checked(change: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        _cfg(lora=True, **change)


def test_lora_target_modules_reach_peft() -> None:
    pytest.importorskip("peft")
    from echo.train.lora import lora_config

    assert lora_config(_cfg(lora=True)).target_modules == "all-linear"
    lc = lora_config(_cfg(lora=True, lora_r=4, lora_target_modules=("q_proj", "v_proj")))
    assert set(lc.target_modules) == {"q_proj", "v_proj"} and lc.r == 4


# -- evaluate: the keep threshold ------------------------------------------------------------


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Synthetic shards and an untrained tiny model saved in HF format (no Ray)."""
    pytest.importorskip("transformers")
    import torch

    from echo.train.data import open_shards
    from echo.train.model import ModelSpec, build_model, build_tokenizer, tokenizer_info
    from echo.train.synthetic import TINY_LLAMA, write_synthetic_shards
    from echo.train.trainer import _texts

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("eval")
    shards = root / "shards"
    write_synthetic_shards(shards, n_train=8, n_val=6, n_test=2)
    manifest, entries = open_shards(str(shards), ("sft",), "train")
    spec = ModelSpec("config", "tiny", dict(TINY_LLAMA))
    tok = build_tokenizer(spec, lambda: _texts(str(shards), entries, manifest.fim), manifest.fim)
    model = build_model(spec.to_dict(), tokenizer_info(tok), seed=0)
    model.save_pretrained(root / "model")
    tok.save_pretrained(root / "model")
    return {"root": root, "shards": shards, "model": root / "model"}


def _proposal_similarities(shards: Path) -> list[float]:
    from echo.train.data import open_shards, read_table
    from echo.train.evaluate import edit_similarity

    _, entries = open_shards(str(shards), ("sft",), "val")
    rows = read_table(str(shards), entries["sft"], ["completion", "proposal"]).to_pydict()
    return [
        edit_similarity(p, c) for p, c in zip(rows["proposal"], rows["completion"], strict=True)
    ]


def test_keep_similarity_setting_changes_the_kept_share(saved_model: dict[str, Any]) -> None:
    from echo.train.evaluate import evaluate

    sims = _proposal_similarities(saved_model["shards"])
    thresholds = (0.5, sorted(sims)[len(sims) // 2], 0.99)
    shares = []
    for t in thresholds:
        report = evaluate(
            str(saved_model["model"]),
            str(saved_model["shards"]),
            "val",
            max_new_tokens=2,
            keep_similarity=t,
        )
        assert report["keep_threshold"] == t and report["keep_threshold_source"] == "setting"
        share = report["proposal_metrics"]["kept_share"]
        assert share == pytest.approx(sum(s >= t for s in sims) / len(sims))
        shares.append(share)
    assert shares[0] == 1.0 and shares[-1] == 0.0  # one-operator edits: similar, not equal
    assert len(set(shares)) >= 2


def test_keep_similarity_defaults_to_the_contract_and_is_range_checked(
    saved_model: dict[str, Any],
) -> None:
    from echo.train.evaluate import KEEP_THRESHOLD, evaluate

    plain = evaluate(str(saved_model["model"]), str(saved_model["shards"]), "val", max_new_tokens=1)
    assert plain["keep_threshold"] == KEEP_THRESHOLD == 0.5
    assert plain["keep_threshold_source"] == "contract default"
    assert plain["proposal_metrics"]["kept_share"] == 1.0
    with pytest.raises(EchoError, match=r"within \[0, 1\]"):
        evaluate(str(saved_model["model"]), str(saved_model["shards"]), "val", keep_similarity=1.5)


def test_evaluate_cli_takes_keep_similarity(saved_model: dict[str, Any], tmp_path: Path) -> None:
    from echo.cli import main as echo_main

    out = tmp_path / "eval.json"
    argv = [
        "evaluate",
        "--model",
        str(saved_model["model"]),
        "--shards",
        str(saved_model["shards"]),
    ]
    assert (
        echo_main([*argv, "--max-new-tokens", "1", "--keep-similarity", "0.99", "--out", str(out)])
        == 0
    )
    report = json.loads(out.read_text(encoding="utf-8"))
    assert report["keep_threshold"] == 0.99 and report["proposal_metrics"]["kept_share"] == 0.0


def test_cli_takes_bare_lora_and_checkpointing_flags() -> None:
    from echo.config import resolve
    from echo.tracking import TrackingConfig
    from echo.train.cli import build_parser

    base = ["--shards", "s", "--model", "m", "--out", "o", "--objective", "sft+kto"]
    args = build_parser().parse_args([*base, "--lora", "--gradient-checkpointing",
                                      "--lora-target-modules", "q_proj,v_proj"])  # fmt: skip
    cfg, _ = resolve(args, TrainConfig, TrackingConfig)
    assert (cfg.lora, cfg.gradient_checkpointing, cfg.objective) == (True, True, "sft+kto")
    assert cfg.lora_target_modules == ("q_proj", "v_proj")
    cfg, _ = resolve(build_parser().parse_args([*base, "--no-lora"]), TrainConfig, TrackingConfig)
    assert cfg.lora is False
