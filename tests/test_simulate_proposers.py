"""Proposers: the noisy oracle's rates, and a real (tiny, local) transformers model."""

from __future__ import annotations

from pathlib import Path

import pytest

from echo.simulate.proposers import NoisyOracleProposer, TransformersProposer, cut_lines


def test_oracle_rates_give_the_share_of_exact_proposals() -> None:
    truth = "    return value + 1\n    if x:\n        pass\n"
    contexts = [(f"def f{i}(value):\n", "") for i in range(2000)]
    perfect = NoisyOracleProposer("m", exact=1, truncated=0, corrupted=0, wrong=0)
    assert perfect.propose_batch(contexts[:5], truths=[truth] * 5) == ["    return value + 1"] * 5
    half = NoisyOracleProposer("m", exact=0.5, truncated=0, corrupted=0.5, wrong=0, seed=1)
    out = half.propose_batch(contexts, truths=[truth] * len(contexts))
    share = sum(o == "    return value + 1" for o in out) / len(out)
    assert 0.45 < share < 0.56


def test_oracle_truncated_proposals_are_prefixes() -> None:
    truth = "result = compute(alpha, beta, gamma)\n"
    p = NoisyOracleProposer("m", exact=0, truncated=1, corrupted=0, wrong=0)
    out = p.propose_batch([(f"x{i} = 1\n", "") for i in range(50)], truths=[truth] * 50)
    assert all(truth.startswith(o) and o != truth.rstrip("\n") for o in out)


def test_cut_lines_keeps_the_line_budget() -> None:
    assert cut_lines("a\nb\nc", 2) == "a\nb"
    assert cut_lines("a", 2) == "a"


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    path = tmp_path_factory.mktemp("tiny-lm")
    specials = ["<|endoftext|>", "<fim_prefix>", "<fim_suffix>", "<fim_middle>"]
    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    from tokenizers import decoders

    tok.decoder = decoders.ByteLevel()
    corpus = ["def add(a, b):\n    return a + b\n", "for i in range(10):\n    print(i)\n"] * 50
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(corpus, trainer)
    fast = transformers.PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>", pad_token="<|endoftext|>")
    fast.save_pretrained(path)
    import torch

    torch.manual_seed(0)
    cfg = transformers.GPT2Config(vocab_size=fast.vocab_size, n_positions=256, n_embd=64, n_layer=2, n_head=2,
                                  eos_token_id=fast.eos_token_id, bos_token_id=fast.eos_token_id)  # fmt: skip
    transformers.GPT2LMHeadModel(cfg).save_pretrained(path)
    return path


def test_transformers_proposer_generates_from_a_local_model(tiny_model: Path) -> None:
    p = TransformersProposer(str(tiny_model), "tiny", max_new_tokens=8, max_lines=1, batch_size=2)
    out = p.propose_batch([("def add(a, b):\n    ret", "\n"), ("for i in ", ":\n"), ("x", "")])
    assert len(out) == 3
    assert all(isinstance(o, str) and "\n" not in o for o in out)
    assert p.model_id == "tiny"
    again = TransformersProposer(str(tiny_model), "tiny", max_new_tokens=8, max_lines=1, batch_size=3)
    assert again.propose_batch([("def add(a, b):\n    ret", "\n"), ("for i in ", ":\n"), ("x", "")]) == out


def test_simulation_runs_with_the_transformers_proposer(tiny_model: Path, tmp_path: Path) -> None:
    from test_simulate_support import ingest, make_corpus

    from echo.simulate import FaultConfig, SimConfig, simulate

    corpus = make_corpus(tmp_path / "c")
    p = TransformersProposer(str(tiny_model), "tiny", max_new_tokens=6)
    cfg = SimConfig(users=2, days=1, seed=1, corpus=str(corpus), session_minutes=4, sessions_per_day=1)
    result = simulate(cfg, FaultConfig(faults="none"), out=tmp_path / "o", proposer=p)
    events, _ = ingest(result.batch_dirs)
    shown = [e for e in events if e["event_type"] == "shown"]
    assert shown and all(e["model_id"] == "tiny" for e in shown)


def test_proposer_cuts_the_context_to_the_trained_characters(tiny_model: Path) -> None:
    p = TransformersProposer(str(tiny_model), "tiny", max_prefix_chars=10, max_suffix_chars=4)
    p._load()
    tok = p._tok
    ids = p._prompt_ids("def add(a, b):\n    return a + b\n" * 3, "print(i)\n")  # 10 + 4 chars kept
    prefix = "def add(a, b):\n    return a + b\n" * 3
    assert tok.decode(ids) == f"<fim_prefix>{prefix[-10:]}<fim_suffix>prin<fim_middle>"


def test_left_to_right_proposer_prompt_is_the_prefix_alone(tiny_model: Path) -> None:
    p = TransformersProposer(str(tiny_model), "tiny", fim=False, max_prefix_chars=12)
    p._load()
    prefix = "for i in range(10):\n    "
    ids = p._prompt_ids(prefix, "print(i)\n")
    assert ids == p._tok.encode(prefix[-12:], add_special_tokens=False)


def test_propose_one_context_equals_the_batch_answer(tiny_model: Path) -> None:
    from echo.errors import ConfigError
    from echo.simulate.proposers import propose

    model = TransformersProposer(str(tiny_model), "tiny", max_new_tokens=6)
    ctx = ("def add(a, b):\n    ret", "\n")
    assert propose(model, *ctx) == model.propose_batch([ctx])[0]
    oracle = NoisyOracleProposer("m", exact=1, truncated=0, corrupted=0, wrong=0)
    assert propose(oracle, "x = ", truth="compute(1)\n") == "compute(1)"
    with pytest.raises(ConfigError, match="true continuation"):
        propose(oracle, "x = ")
