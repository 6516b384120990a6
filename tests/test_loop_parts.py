"""The experience loop's parts that need no Spark or Ray: the two code conventions,
the project split and the static model's pretraining samples."""

from __future__ import annotations

import random
import re
from pathlib import Path

import pytest

from echo.loop.project import KESTREL, PUBLIC, project_file, public_files, write_project
from echo.loop.static import fim_parts, fim_sample

KESTREL_MARKERS = re.compile(r"\bkx_|\bKx|\.vault\.|\.trail\.")


def test_public_code_has_none_of_the_projects_conventions() -> None:
    texts = public_files(12, seed=3)
    assert texts and not any(KESTREL_MARKERS.search(t) for t in texts)
    kestrel = [project_file(0, i)[1] for i in range(12)]
    assert all(KESTREL_MARKERS.search(t) for t in kestrel)


def test_both_conventions_write_the_same_shape_of_handler() -> None:
    for st in (KESTREL, PUBLIC):
        text = public_files(1)[0] if st is PUBLIC else project_file(0, 0)[1]
        handlers = [b for b in text.split("\n\n\n") if "def " in b and "-> dict:" in b]
        assert handlers, st.name
        for h in handlers:
            lines = h.strip().splitlines()
            assert lines[0].startswith("@") and lines[-1].strip().startswith("return ")
            assert f"    {st.rec} = " in h and f"    if {st.rec} is None:" in h


def test_project_split_is_disjoint_and_deterministic(tmp_path: Path) -> None:
    a = write_project(tmp_path / "a", files=9, seed=5)
    b = write_project(tmp_path / "b", files=9, seed=5)
    harvest = {p.name for p in a.harvest.glob("*.py")}
    heldout = {p.name for p in a.heldout.glob("*.py")}
    assert len(harvest) == a.harvest_files == 6 and len(heldout) == a.heldout_files == 3
    assert not harvest & heldout
    for name in harvest:
        assert (a.harvest / name).read_bytes() == (b.harvest / name).read_bytes()


def test_fim_parts_put_the_middle_after_the_prompt_in_both_modes() -> None:
    assert fim_parts("x = ", "\n", "1", "lm") == ("x = ", "1<|endoftext|>")
    prompt, completion = fim_parts("x = ", "\ny = 2", "1", "psm")
    assert prompt == "<fim_prefix>x = <fim_suffix>\ny = 2<fim_middle>"
    assert completion == "1<|endoftext|>"


def test_fim_sample_middle_is_the_rest_of_a_line() -> None:
    text = "def f(a):\n    return a + 1\n\n\nclass C:\n    pass\n"
    rng = random.Random(0)
    for _ in range(50):
        pre, suf, mid = fim_sample(text, rng, 100, 20)
        assert pre + mid + suf in text
        assert "\n" not in mid.lstrip("\n")  # at most the line break before a next line
        assert suf == "" or suf.startswith("\n")


def test_pretraining_rows_tokenize_prompt_and_middle_apart() -> None:
    pytest.importorskip("tokenizers")
    pytest.importorskip("transformers")
    from echo.loop.static import _batches
    from echo.train.tokenizer import DEFAULT_FIM, train_bpe

    texts = public_files(4)
    tok = train_bpe(iter(texts), 400, DEFAULT_FIM)
    rows = next(_batches(texts, [], 0.0, tok, random.Random(1), 8, 10_000, 200, 40, "lm"))
    rng = random.Random(1)
    for row in rows:
        text = texts[rng.randrange(len(texts))]
        pre, suf, mid = fim_sample(text, rng, 200, 40)
        prompt, completion = fim_parts(pre, suf, mid, "lm")
        want = tok(prompt, add_special_tokens=False)["input_ids"] + tok(completion, add_special_tokens=False)["input_ids"]
        assert row == want


def test_static_pretraining_lowers_the_loss_on_the_bare_loop(tmp_path: Path) -> None:
    pytest.importorskip("transformers")
    from transformers import AutoModelForCausalLM

    from echo.loop.static import pretrain_static
    from echo.simulate.corpus import Corpus

    corpus_dir = tmp_path / "corpus"
    corpus_dir.mkdir()
    for i, text in enumerate(public_files(6)):
        (corpus_dir / f"m{i}.py").write_text(text, encoding="utf-8")
    res = pretrain_static(
        tmp_path / "static", corpus=Corpus.from_dir(corpus_dir, min_chars=50),
        model_config={"model_type": "gpt2", "n_layer": 1, "n_embd": 32, "n_head": 2, "n_positions": 64},
        steps=20, batch_size=2, lr=5e-3, max_files=6, vocab_size=300, seed=0, prefix_chars=200,
        suffix_chars=40, fim_mode="lm",
    )  # fmt: skip
    assert len(res.losses) == 20
    assert sum(res.losses[-5:]) / 5 < sum(res.losses[:5]) / 5
    assert AutoModelForCausalLM.from_pretrained(res.model_path).config.n_layer == 1


def _people(rates: list[tuple[int, int]]) -> dict[str, tuple[int, int]]:
    return {f"{i:05d}": r for i, r in enumerate(rates)}


def _round(echo: list[tuple[int, int]], static: list[tuple[int, int]], refined: int) -> dict[str, object]:
    from echo.loop.stats import paired_difference

    d = {"a": "echo-r1", "b": "static", **paired_difference(_people(echo), _people(static), resamples=500, seed=1)}
    return {"round": 1, "harvest": {"pairs": {"total": refined + 10, "outcome:refined": refined}},
            "eval": {"paired": {"echo-r1 - static": d}}}  # fmt: skip


def test_verdict_says_echo_beats_when_the_paired_interval_excludes_zero() -> None:
    from echo.loop.report import verdicts

    # every user accepts 4 more of 20 proposals from Echo: +20 points, the same for everyone
    (v,) = verdicts({"rounds": [_round([(6 + i % 3, 20) for i in range(30)], [(2 + i % 3, 20) for i in range(30)], refined=120)]})
    assert "echo-r1 beats static" in v and "+20.0 points" in v and "over 30 users" in v and "Why" not in v


def test_verdict_says_why_when_echo_does_not_win() -> None:
    from echo.loop.report import verdicts

    echo = [(1, 10), (0, 10), (2, 10), (1, 10)]
    static = [(0, 10), (2, 10), (1, 10), (1, 10)]
    (v,) = verdicts({"rounds": [_round(echo, static, refined=4)]})
    assert "does NOT beat static" in v
    assert "only 4 refined pairs" in v


def test_paired_difference_of_an_arm_with_itself_is_exactly_zero() -> None:
    from echo.loop.stats import paired_difference

    same = _people([(3, 10), (0, 4), (7, 9), (1, 12)])
    d = paired_difference(same, same, resamples=200, seed=0)
    assert d["diff"] == 0.0 and d["ci95"] == [0.0, 0.0] and d["people"] == 4


def test_pairing_narrows_the_interval_when_users_differ_a_lot() -> None:
    """Users differ widely in how much they accept; pairing cancels it. The same counts
    with the people shuffled in one arm (pairs broken) give a much wider interval."""
    from echo.loop.stats import paired_difference

    base = [(k, 20) for k in (1, 2, 3, 9, 10, 11, 15, 16, 17, 18) * 3]
    better = [(a + 2, n) for a, n in base]
    paired = paired_difference(_people(better), _people(base), resamples=1000, seed=0)
    broken = paired_difference(_people(better), _people(base[7:] + base[:7]), resamples=1000, seed=0)
    assert paired["diff"] == pytest.approx(0.1) and broken["diff"] == pytest.approx(0.1)
    assert paired["ci95"][0] > 0
    assert (paired["ci95"][1] - paired["ci95"][0]) < 0.5 * (broken["ci95"][1] - broken["ci95"][0])


def test_a_person_missing_from_one_arm_counts_as_nothing_shown_there() -> None:
    from echo.loop.stats import paired_difference

    d = paired_difference({"00000": (5, 10), "00001": (1, 10)}, {"00000": (2, 10)}, resamples=100, seed=0)
    assert d["people"] == 2 and d["diff"] == pytest.approx(6 / 20 - 2 / 10)


def test_goals_say_met_not_met_and_not_measured_from_the_run() -> None:
    from echo.loop.report import goals

    rec = _round([(6, 20)] * 10, [(2, 20)] * 10, refined=50)
    rec["eval"]["paired"]["echo-r1 - raw-accepted-r1"] = rec["eval"]["paired"]["echo-r1 - static"]
    g = {x["goal"].split(" (")[0].split(",")[0]: x["met"] for x in goals({"rounds": [rec], "timings": {"total_s": 700.0}})}
    assert g["round 1: echo ahead of raw-accepted"] is True
    assert g["round 2 at least as good as round 1"] is None
    assert g["the whole loop in at most 10 minutes"] is False


def test_a_second_loop_run_into_the_same_directory_is_refused(tmp_path: Path) -> None:
    from echo.errors import ConfigError
    from echo.loop import tiny
    from echo.loop.rounds import run_loop

    (tmp_path / "round-1").mkdir()
    with pytest.raises(ConfigError, match="already holds a loop run"):
        run_loop(tiny(str(tmp_path)))
