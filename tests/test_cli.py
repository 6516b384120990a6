"""The command line: help, one-line errors with non-zero exits, config precedence."""

from __future__ import annotations

import argparse
import contextlib
import importlib
import subprocess
import sys

import pytest

from echo.cli import COMMANDS, main
from echo.config import ConfigParser, parse_bool


def run(argv, capsys):
    rc = main(argv)
    out = capsys.readouterr()
    return rc, out.out, out.err.strip()


def test_help_lists_every_command(capsys):
    rc, out, _ = run(["--help"], capsys)
    assert rc == 0 and all(name in out for name in COMMANDS)


def test_unknown_command_is_an_error(capsys):
    rc, _, err = run(["ingestt"], capsys)
    assert rc == 2 and "unknown command" in err


@pytest.mark.parametrize(
    "argv, message",
    [
        (["sessionize"], "--lake DIR is required"),
        (["ingest", "--lake", "x"], "--events"),
        (["track", "--lake", "x", "--min-refine-similarity", "2"], "within [0, 1]"),
        (["track", "--lake", "x", "--refine-window-s", "ten"], "invalid"),
        (["sessionize", "--lake", "x", "--session-gap-s", "-1"], "must be >= 0"),
        (["sessionize", "--lake", "x", "--lake-backend", "parquet"], "invalid choice"),
        (["shards", "--lake", "x"], "--out is required"),
        (["sessionize", "--lake", "x", "--buckets", "-1"], "--buckets must be at least 1"),
        (["sessionize", "--lake", "x", "--wait-s", "-5"], "--wait-s must be >= 0"),
    ],
)
def test_bad_arguments_give_one_line_and_exit_2(argv, message, capsys):
    rc, _, err = run(argv, capsys)
    assert rc == 2
    assert len(err.splitlines()) == 1 and message in err


def test_unknown_yaml_setting_is_an_error(tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("session_gap: 10\n")
    rc, _, err = run(["sessionize", "--lake", "x", "--config", str(cfg)], capsys)
    assert rc == 2 and "unknown setting(s)" in err and "session_gap" in err


def test_missing_yaml_file_is_an_error(tmp_path, capsys):
    rc, _, err = run(["sessionize", "--lake", "x", "--config", str(tmp_path / "nope.yaml")], capsys)
    assert rc == 2 and "config file not found" in err


def test_stage_on_a_path_that_is_not_a_lake_is_refused(spark, tmp_path, capsys):
    rc, _, err = run(["track", "--lake", str(tmp_path / "empty"), "--quiet"], capsys)
    assert rc == 2 and "not an Echo lake" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "empty").exists()


def test_python_dash_m_echo_prints_no_traceback(tmp_path):
    p = subprocess.run(
        [sys.executable, "-m", "echo", "ingest", "--events", str(tmp_path / "missing"), "--lake", str(tmp_path / "l")],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert p.returncode == 2
    assert p.stderr.strip().splitlines() == [f"echo-pipeline ingest: error: input not found: {tmp_path / 'missing'}"]


@pytest.mark.parametrize(
    "make",
    [
        lambda: __import__("echo.config", fromlist=["PipelineConfig"]).PipelineConfig(session_gap_s=-1),
        lambda: __import__("echo.config", fromlist=["LakeConfig"]).LakeConfig(buckets=-2),
        lambda: __import__("echo.pairs_config", fromlist=["PairsConfig"]).PairsConfig(train_ratio=-1.0),
        lambda: __import__("echo.pairs_config", fromlist=["ShardsConfig"]).ShardsConfig(out="x", workers=0),
        lambda: __import__("echo.train.config", fromlist=["TrainConfig"]).TrainConfig(shards="s", model="m", out="o", lr=0),
        lambda: __import__("echo.loop.config", fromlist=["LoopConfig"]).LoopConfig(out="o", rounds=0),
        lambda: __import__("echo.simulate.config", fromlist=["FaultConfig"]).FaultConfig(late_rate=2.0),
        lambda: __import__("echo.importers.cli", fromlist=["ImportConfig"]).ImportConfig(model_id=""),
        lambda: __import__("echo.tracking", fromlist=["TrackingConfig"]).TrackingConfig(experiment=""),
    ],
    ids=["pipeline", "lake", "pairs", "shards", "train", "loop", "faults", "import", "tracking"],
)
def test_a_config_section_is_checked_when_it_is_made(make):
    from echo.errors import ConfigError

    with pytest.raises(ConfigError):
        make()


class _Parsed(Exception):
    pass


@pytest.fixture
def parsers(monkeypatch: pytest.MonkeyPatch) -> dict[str, argparse.ArgumentParser | None]:
    """The parser each command parses its arguments with (None: not a ConfigParser)."""
    seen: list[argparse.ArgumentParser] = []

    def grab(self: argparse.ArgumentParser, *args: object, **kwargs: object) -> None:
        seen.append(self)
        raise _Parsed

    monkeypatch.setattr(ConfigParser, "parse_args", grab)
    out: dict[str, argparse.ArgumentParser | None] = {}
    for name, (module, _) in COMMANDS.items():
        seen.clear()
        with contextlib.suppress(_Parsed, SystemExit):
            importlib.import_module(module).main(["--help"])
        out[name] = seen[0] if seen else None
    return out


def test_every_command_parses_with_the_config_parser(parsers):
    assert [name for name, p in parsers.items() if p is None] == []


def test_every_boolean_option_is_a_flag_with_its_negation(parsers):
    odd = [
        f"{name} {'/'.join(a.option_strings)}"
        for name, p in parsers.items() if p is not None
        for a in p._actions
        if isinstance(a, (argparse._StoreTrueAction, argparse._StoreFalseAction)) or a.type is parse_bool
    ]  # fmt: skip
    assert odd == []


def test_a_boolean_setting_is_set_and_cleared_by_its_flag_pair():
    from echo.config import resolve
    from echo.train.cli import build_parser
    from echo.train.config import TrainConfig

    base = ["--shards", "s", "--model", "m", "--out", "o"]
    on = resolve(build_parser().parse_args([*base, "--use-gpu", "--precision", "bf16"]), TrainConfig)[0]
    off = resolve(build_parser().parse_args([*base, "--no-use-pair-weights"]), TrainConfig)[0]
    assert (on.use_gpu, off.use_pair_weights) == (True, False)
