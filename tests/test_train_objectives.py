"""Objectives move a tiny model the intended way (single process, no Ray)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

import torch

from echo.train.bare import bare_train
from echo.train.data import (
    IGNORE,
    BatchPlan,
    EncodeSpec,
    collate_kto,
    collate_pref,
    collate_sft,
    local_examples,
    open_shards,
)
from echo.train.model import ModelSpec, build_model, build_tokenizer, tokenizer_info
from echo.train.objectives import KTOParams, kto_loss, kto_margin, preference_margin, sft_loss
from echo.train.synthetic import TINY_LLAMA, write_synthetic_shards
from echo.train.trainer import _texts

pytestmark = pytest.mark.train


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    torch.set_num_threads(1)  # a tiny model on a shared 2-core box: threads only contend
    root = tmp_path_factory.mktemp("shards")
    write_synthetic_shards(root, n_train=32, n_val=4, n_test=4)
    manifest, entries = open_shards(str(root), ("sft", "pref", "kto"), "train")
    spec = ModelSpec("config", "tiny", dict(TINY_LLAMA))
    tok = build_tokenizer(spec, lambda: _texts(str(root), entries, manifest.fim), manifest.fim)
    enc = EncodeSpec(256, 64, tok.eos_token_id)
    examples = {
        f: local_examples(str(root), entries[f], f, tok, enc) for f in ("sft", "pref", "kto")
    }
    return {
        "root": root,
        "spec": spec,
        "tok": tok,
        "examples": examples,
        "info": tokenizer_info(tok),
    }


def _model(setup: dict[str, Any]) -> Any:
    return build_model(setup["spec"].to_dict(), setup["info"], seed=0)


def _all_sft_loss(model: Any, setup: dict[str, Any]) -> float:
    ex = setup["examples"]["sft"]
    with torch.no_grad():
        return float(
            sft_loss(model, collate_sft(ex, range(len(ex)), setup["info"]["pad_token_id"]))[0]
        )


def _all_margin(model: Any, ref: Any, setup: dict[str, Any]) -> float:
    ex = setup["examples"]["pref"]
    return preference_margin(
        model, ref, collate_pref(ex, range(len(ex)), setup["info"]["pad_token_id"])
    )


def test_labels_cover_only_completion_and_end_token(setup: dict[str, Any]) -> None:
    ex = setup["examples"]["sft"]
    batch = collate_sft(ex, [0, 1, 2], setup["info"]["pad_token_id"])
    for i in range(3):
        labels = batch["labels"][i]
        kept = labels[labels != IGNORE].tolist()
        assert kept == ex.fields["completion_ids"][i].tolist()
        assert kept[-1] == setup["tok"].eos_token_id
        n_prompt = len(ex.fields["prompt_ids"][i])
        assert (labels[:n_prompt] == IGNORE).all()


def test_sft_lowers_train_loss_and_changes_parameters(setup: dict[str, Any]) -> None:
    model = _model(setup)
    before_params = [p.detach().clone() for p in model.parameters()]
    before = _all_sft_loss(model, setup)
    bare_train(
        model,
        "sft",
        {"sft": setup["examples"]["sft"]},
        steps=12,
        micro_batch_size=8,
        lr=3e-3,
        pad_id=setup["info"]["pad_token_id"],
    )
    after = _all_sft_loss(model, setup)
    assert after < before - 0.5
    changed = sum(
        not torch.equal(a, b) for a, b in zip(before_params, model.parameters(), strict=True)
    )
    assert changed == len(before_params)


def test_dpo_raises_chosen_over_rejected_margin(setup: dict[str, Any]) -> None:
    model = _model(setup)
    ref = copy.deepcopy(model).eval()
    assert abs(_all_margin(model, ref, setup)) < 1e-5
    res = bare_train(
        model,
        "dpo",
        {"pref": setup["examples"]["pref"]},
        steps=12,
        micro_batch_size=8,
        lr=3e-3,
        pad_id=setup["info"]["pad_token_id"],
        ref_model=ref,
    )
    assert _all_margin(model, ref, setup) > 1.0
    assert res.losses[-1] < res.losses[0]


def test_sft_plus_dpo_lowers_sft_loss_and_raises_margin(setup: dict[str, Any]) -> None:
    model = _model(setup)
    ref = copy.deepcopy(model).eval()
    before = _all_sft_loss(model, setup)
    bare_train(
        model,
        "sft+dpo",
        {f: setup["examples"][f] for f in ("sft", "pref")},
        steps=12,
        micro_batch_size=8,
        lr=3e-3,
        pad_id=setup["info"]["pad_token_id"],
        ref_model=ref,
    )
    assert _all_sft_loss(model, setup) < before - 0.5
    assert _all_margin(model, ref, setup) > 0.5


def test_pair_weights_scale_each_pairs_share_of_the_loss(setup: dict[str, Any]) -> None:
    model = _model(setup)
    ex = setup["examples"]["sft"]
    batch = collate_sft(ex, [0, 1], setup["info"]["pad_token_id"])
    with torch.no_grad():
        batch["weights"] = torch.tensor([1.0, 0.0])
        only_first = float(sft_loss(model, batch)[0])
        single = collate_sft(ex, [0], setup["info"]["pad_token_id"])
        single["weights"] = torch.tensor([1.0])
        alone = float(sft_loss(model, single)[0])
    assert only_first == pytest.approx(alone, rel=1e-4)


def test_batch_plan_stream_resumes_at_its_cursor(setup: dict[str, Any]) -> None:
    ex = setup["examples"]["sft"]
    plan = BatchPlan(len(ex), 4, seed=3)
    full = plan.stream(ex, 0)
    first = [next(full) for _ in range(13)]  # crosses an epoch boundary (8 per epoch)
    resumed = plan.stream(ex, 5)
    assert [next(resumed) for _ in range(8)] == first[5:13]
    assert sorted(i for b in first[:8] for i in b) == list(range(len(ex)))


def test_shards_are_verified_before_reading(setup: dict[str, Any], tmp_path: Path) -> None:
    from echo.shards.manifest import ManifestError

    root = tmp_path / "s"
    write_synthetic_shards(root, n_train=8, n_val=2, n_test=2)
    target = next((root / "sft" / "train").glob("*.parquet"))
    target.write_bytes(target.read_bytes()[:-8] + b"tampered")
    with pytest.raises(ManifestError, match="does not match its manifest hash"):
        open_shards(str(root), ("sft",), "train")


def _kto_margin(model: Any, ref: Any, setup: dict[str, Any]) -> float:
    ex = setup["examples"]["kto"]
    return kto_margin(model, ref, collate_kto(ex, range(len(ex)), setup["info"]["pad_token_id"]))


def test_kto_batch_pairs_each_prompt_with_the_previous_completion(setup: dict[str, Any]) -> None:
    ex = setup["examples"]["kto"]
    batch = collate_kto(ex, [3, 5, 7], setup["info"]["pad_token_id"])
    assert batch["input_ids"].shape[0] == 6 and batch["kto_label"].tolist() == [
        bool(ex.labels[i]) for i in (3, 5, 7)
    ]
    for row, (p, c) in enumerate([(3, 3), (5, 5), (7, 7), (3, 7), (5, 3), (7, 5)]):
        labels = batch["labels"][row]
        assert labels[labels != IGNORE].tolist() == ex.fields["completion_ids"][c].tolist()
        n_prompt = len(ex.fields["prompt_ids"][p])
        assert batch["input_ids"][row, :n_prompt].tolist() == ex.fields["prompt_ids"][p].tolist()


def test_kto_raises_desirable_over_undesirable_log_ratio(setup: dict[str, Any]) -> None:
    ex = setup["examples"]["kto"]
    assert ex.labels is not None and 0 < ex.labels.sum() < len(ex)
    model = _model(setup)
    ref = copy.deepcopy(model).eval()
    assert abs(_kto_margin(model, ref, setup)) < 1e-5
    res = bare_train(
        model,
        "kto",
        {"kto": ex},
        steps=12,
        micro_batch_size=8,
        lr=3e-3,
        pad_id=setup["info"]["pad_token_id"],
        ref_model=ref,
        kto=KTOParams(beta=0.1),
    )
    assert _kto_margin(model, ref, setup) > 1.0
    assert res.losses[-1] < res.losses[0]
    # unpaired feedback also orders the paired data: final text over the logged proposal
    assert _all_margin(model, ref, setup) > 0.5


def test_kto_loss_matches_the_formula_on_one_batch(setup: dict[str, Any]) -> None:
    """TRL's KTO loss written out: 1 - sigmoid(beta (r - z0)) for desirable rows,
    1 - sigmoid(beta (z0 - r)) for undesirable ones, z0 from the mismatched rows."""
    from echo.train.objectives import sequence_logps

    ex = setup["examples"]["kto"]
    model, ref = _model(setup), _model(setup)
    with torch.no_grad():  # a reference that differs from the policy
        for p in ref.parameters():
            p.add_(0.05 * torch.randn_like(p))
    batch = collate_kto(ex, [0, 1, 2, 3], setup["info"]["pad_token_id"])
    params = KTOParams(beta=0.5, desirable_weight=2.0, undesirable_weight=0.5)
    with torch.no_grad():
        loss, stats = kto_loss(model, ref, batch, params, use_weights=False)
        r = sequence_logps(model, batch)[0] - sequence_logps(ref, batch)[0]
    z0 = max(0.0, float(r[4:].mean()))
    expected = []
    for i, good in enumerate(batch["kto_label"].tolist()):
        x = float(r[i])
        if good:
            expected.append(2.0 * (1 - torch.sigmoid(torch.tensor(0.5 * (x - z0)))))
        else:
            expected.append(0.5 * (1 - torch.sigmoid(torch.tensor(0.5 * (z0 - x)))))
    assert float(loss) == pytest.approx(sum(float(e) for e in expected) / 4, rel=1e-5)
    assert stats["kto_kl"] == pytest.approx(z0, rel=1e-5, abs=1e-7)


def test_sft_plus_kto_lowers_sft_loss_and_raises_kto_margin(setup: dict[str, Any]) -> None:
    model = _model(setup)
    ref = copy.deepcopy(model).eval()
    before = _all_sft_loss(model, setup)
    bare_train(
        model,
        "sft+kto",
        {f: setup["examples"][f] for f in ("sft", "kto")},
        steps=12,
        micro_batch_size=8,
        lr=3e-3,
        pad_id=setup["info"]["pad_token_id"],
        ref_model=ref,
    )
    assert _all_sft_loss(model, setup) < before - 0.5
    assert _kto_margin(model, ref, setup) > 0.5


def test_lora_trains_only_adapters_and_saves_a_loadable_adapter_and_merged_model(
    setup: dict[str, Any], tmp_path: Path
) -> None:
    """Bare loop, KTO with LoRA + gradient checkpointing: the base stays frozen and is the
    reference; the adapter (plain peft) and the merged model (plain transformers) give
    the trained model's logits."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from echo.train.config import TrainConfig
    from echo.train.lora import export_lora, prepare_model, trainable_params

    cfg = TrainConfig(shards="s", model="m", out="o", lora=True, lora_r=4, lora_alpha=8, gradient_checkpointing=True)
    model = prepare_model(_model(setup), cfg)
    base = _model(setup).eval()
    assert 0 < trainable_params(model) < sum(p.numel() for p in base.parameters()) // 4
    frozen = {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}
    bare_train(
        model,
        "kto",
        {"kto": setup["examples"]["kto"]},
        steps=12,
        micro_batch_size=8,
        lr=1e-2,
        pad_id=setup["info"]["pad_token_id"],
    )
    assert all(torch.equal(p, frozen[n]) for n, p in model.named_parameters() if n in frozen)
    model.eval()
    assert _kto_margin(model, base, setup) > 0.5

    export_lora(
        model.state_dict(),
        lambda: _model(setup),
        cfg,
        setup["tok"],
        tmp_path,
        save_base=True,
    )
    merged = AutoModelForCausalLM.from_pretrained(tmp_path / "hf").eval()
    adapted = PeftModel.from_pretrained(
        AutoModelForCausalLM.from_pretrained(tmp_path / "base"), tmp_path / "adapter"
    ).eval()
    batch = collate_sft(setup["examples"]["sft"], [0, 1], setup["info"]["pad_token_id"])
    kw = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
    with torch.no_grad():
        trained = model(**kw).logits
        assert not torch.allclose(base(**kw).logits, trained, atol=1e-3)
        assert torch.allclose(merged(**kw).logits, trained, atol=1e-4)
        assert torch.allclose(adapted(**kw).logits, trained, atol=1e-4)
