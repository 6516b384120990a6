"""Command-line entry point: ``python -m echo <command>`` or ``echo-pipeline <command>``.

Each command is a module with ``main(argv=None) -> int``; the same ``main`` serves
``spark-submit jobs/<stage>.py``, this CLI and the tests. Modules are imported only when
their command runs, so ``echo-pipeline ingest`` never imports torch.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Sequence

from echo.errors import EchoError

#: command -> (module with ``main(argv)``, one-line description)
COMMANDS: dict[str, tuple[str, str]] = {
    "import": ("echo.importers.cli", "Continue / Tabby client logs -> contract events (JSONL)"),
    "ingest": ("echo.jobs.ingest", "events (JSONL/Parquet) -> bronze/events, bronze/quarantine"),
    "sessionize": ("echo.jobs.sessionize", "bronze/events -> silver/sessions"),
    "track": ("echo.jobs.track", "replay documents -> silver/suggestions, gold/acceptance_metrics"),
    "pairs": ("echo.jobs.pairs", "silver/suggestions -> gold/refinement_pairs"),
    "graph": ("echo.jobs.graph", "silver/suggestions -> gold/suggestion_graph, gold/suggestion_edges"),
    "forecast": ("echo.jobs.forecast", "suggestion graph -> gold/outcome_predictions, gold/outcome_estimates"),
    "run": ("echo.jobs.run", "ingest, sessionize, track, pairs, in order"),
    "shards": ("echo.jobs.shards", "gold/refinement_pairs -> training shards + manifest.json"),
    "forget": ("echo.jobs.forget", "delete a user's rows from every table and vacuum"),
    "simulate": ("echo.simulate.cli", "write simulated telemetry (demo, tests, benchmarks)"),
    "train": ("echo.train.cli", "fine-tune a causal LM on the shards (Ray Train + DeepSpeed)"),
    "evaluate": ("echo.train.evaluate", "offline evaluation of a model on the val/test pairs"),
    "loop": ("echo.loop.cli", "the experience loop: deploy, harvest, retrain, measure"),
    "demo": ("echo.demo", "the experience loop at demo size (--data-only: the data pipeline alone)"),
}

PROG = "echo-pipeline"


def _usage() -> str:
    width = max(len(c) for c in COMMANDS)
    lines = [f"usage: {PROG} <command> [options]   (or: python -m echo <command>)", "", "commands:"]
    lines += [f"  {name:<{width}}  {desc}" for name, (_, desc) in COMMANDS.items()]
    lines += ["", f"'{PROG} <command> --help' shows a command's options."]
    lines += ["--verbose (anywhere) keeps Spark's and Ray's own logging on the terminal; else it goes to a log file."]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "help"):
        print(_usage())
        return 0 if args else 2
    if args[0] in ("-V", "--version"):
        from echo import __version__

        print(f"{PROG} {__version__}")
        return 0
    if "--verbose" in args:
        args = [a for a in args if a != "--verbose"]
        os.environ["ECHO_VERBOSE"] = "1"
    if not args:
        print(_usage())
        return 2
    command, rest = args[0], args[1:]
    if command not in COMMANDS:
        print(f"{PROG}: unknown command {command!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    module_name = COMMANDS[command][0]
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        extra = "train" if command in ("train", "evaluate", "loop", "demo") else "spark"
        if command == "forecast":
            extra = "graph"
        print(
            f"{PROG} {command}: missing dependency ({exc.name or exc}); "
            f"install the '{extra}' extra (see README)",
            file=sys.stderr,
        )
        return 3
    from echo import logs

    logs.start(command, rest)
    try:
        return run_main(module.main, rest, prog=f"{PROG} {command}")
    finally:
        logs.finish()


def run_main(fn: object, argv: Sequence[str], *, prog: str) -> int:
    """Call a job's ``main`` turning user errors into one line on stderr."""
    try:
        rc = fn(list(argv))  # type: ignore[operator]
    except EchoError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"{prog}: interrupted; tables stay at their last committed version", file=sys.stderr)
        return 130
    return int(rc or 0)
