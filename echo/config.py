"""Configuration: frozen dataclasses with defaults and help text.

Every setting is a dataclass field whose ``metadata["help"]`` documents it. The same
field is settable three ways, lowest priority first: its default, a YAML file given with
``--config FILE`` (field names with underscores), and a command-line flag (the field
name with dashes: ``--session-gap-s``; a boolean is the pair ``--flag`` / ``--no-flag``).
The command line wins. Every section checks its values when it is made (:class:`Validated`).

A command may combine several config sections (for example ``run`` uses the pipeline
section and the pairs section); YAML keys are flat and go to the section that owns them.
The resolved config (``to_dict``) is written into every manifest and checkpoint.
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml

from echo import contract
from echo.errors import ConfigError

T = TypeVar("T")


def setting(default: Any, help: str, *, choices: Sequence[Any] | None = None, required: bool = False) -> Any:
    """A config field with its help text (and optional allowed values). ``required``: a
    command that takes this section needs it on the command line or in the YAML."""
    meta: dict[str, Any] = {"help": help}
    if choices is not None:
        meta["choices"] = tuple(choices)
    if required:
        meta["required"] = True
    if isinstance(default, (list, dict)):
        raise TypeError("use tuples for sequence defaults: configs are frozen")
    return field(default=default, metadata=meta)


class Validated:
    """Base of every config section: values are checked when the instance is made
    (``__post_init__`` calls :meth:`validate`, which raises a one-line ConfigError), so a
    config that exists is a valid one. Required settings are checked by :func:`resolve`."""

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Refuse values that cannot work (override per section)."""


@dataclass(frozen=True)
class LakeConfig(Validated):
    """Where the tables live and how they are written."""

    lake: str = setting("", "lake root: a local path or an object-store URI (s3://, abfss://, gs://)")
    lake_backend: str = setting(
        "auto",
        "Delta backend: delta-spark where its JVM classes are on the classpath, else "
        "delta-rs (the embedded default); 'auto' picks",
        choices=("auto", "delta-rs", "delta-spark"),
    )
    buckets: int = setting(
        0,
        "user-hash buckets that partition silver/gold tables, fixed when the lake is created "
        "(0: the lake's own value; 16 for a new lake); a run that asks for another value "
        "than the lake's is refused",
    )
    wait_s: float = setting(
        0.0,
        "seconds to wait when another run holds the lake (0: fail at once, naming the "
        "holder); one writer per lake at a time",
    )
    master: str = setting(
        "",
        "Spark master for local runs (default local[*]); ignored under spark-submit, "
        "where the submit command decides",
    )

    def validate(self) -> None:
        if self.buckets < 0:
            raise ConfigError("--buckets must be at least 1 (or 0: the lake's own value)")
        if self.wait_s < 0:
            raise ConfigError("--wait-s must be >= 0")


@dataclass(frozen=True)
class PipelineConfig(Validated):
    """Settings of the contract's stages (CONTRACT.md sections 1-3)."""

    session_gap_s: int = setting(contract.SESSION_GAP_S, "a gap strictly greater than this many seconds splits sessions")
    refine_window_s: int = setting(contract.REFINE_WINDOW_S, "seconds after the accept during which edits refine it")
    min_refine_similarity: float = setting(
        contract.MIN_REFINE_SIMILARITY, "edit similarity at or above which a changed suggestion is 'refined', else 'rewritten'"
    )
    max_text_bytes: int = setting(
        contract.MAX_TEXT_BYTES, "UTF-8 size above which a text field is quarantined as text_too_large"
    )

    def validate(self) -> None:
        if self.session_gap_s < 0:
            raise ConfigError("--session-gap-s must be >= 0")
        if self.refine_window_s < 0:
            raise ConfigError("--refine-window-s must be >= 0")
        if not 0.0 <= self.min_refine_similarity <= 1.0:
            raise ConfigError("--min-refine-similarity must be within [0, 1]")
        if self.max_text_bytes < 1:
            raise ConfigError("--max-text-bytes must be positive")


def _field_type(cls: type, f: dataclasses.Field[Any]) -> Any:
    hints = typing.get_type_hints(cls)
    return hints[f.name]


def _converter(tp: Any) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return _converter(args[0])
    if origin is tuple:
        inner = typing.get_args(tp)[0]
        conv = _converter(inner)
        return lambda s: tuple(conv(x) for x in (s.split(",") if isinstance(s, str) else s) if x != "")
    if tp is bool:
        return parse_bool
    if tp in (int, float, str):
        return tp
    return str


class ConfigParser(argparse.ArgumentParser):
    """The parser of every command: a bad argument raises ConfigError (one line, exit 2)
    instead of printing usage."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise ConfigError(f"{message} (see --help)")


def add_flag(parser: argparse.ArgumentParser, name: str, help: str, *, default: bool = False) -> None:
    """A boolean option, spelled the one way every command spells one: ``--NAME`` turns it
    on, ``--no-NAME`` off (boolean config settings get the same pair; a YAML value goes
    through :func:`parse_bool`)."""
    parser.add_argument(
        f"--{name}", dest=name.replace("-", "_"), action=argparse.BooleanOptionalAction,
        default=default, help=help,
    )  # fmt: skip


def parse_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    s = str(value).strip().lower()
    if s in ("1", "true", "yes", "on"):
        return True
    if s in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"not a boolean: {value!r}")


def add_config_args(parser: argparse.ArgumentParser, *classes: type) -> None:
    """Add one ``--flag`` per field of each config class (default: not given); a boolean
    field is the pair ``--flag`` / ``--no-flag``."""
    group = parser.add_argument_group("settings (also settable in the --config YAML)")
    for cls in classes:
        for f in dataclasses.fields(cls):
            flag = "--" + f.name.replace("_", "-")
            if any(flag in a.option_strings for a in parser._actions):
                continue
            tp = _field_type(cls, f)
            help_text = f.metadata.get("help", "")
            default = f.default
            kwargs: dict[str, Any] = {
                "dest": f.name,
                "default": argparse.SUPPRESS,
                "help": f"{help_text} (default: {default!r})",
            }
            if tp is bool:  # --flag / --no-flag, as add_flag
                group.add_argument(flag, action=argparse.BooleanOptionalAction, **kwargs)
                continue
            if "choices" in f.metadata:
                kwargs["choices"] = f.metadata["choices"]
            kwargs["type"] = _converter(tp)
            group.add_argument(flag, **kwargs)
    if not any("--config" in a.option_strings for a in parser._actions):
        parser.add_argument("--config", dest="config", default=None, help="YAML file of settings")


def load_yaml(path: str | None) -> dict[str, Any]:
    if not path:
        return {}
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {str(exc).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping of setting: value")
    return {str(k).replace("-", "_"): v for k, v in data.items()}


def build_config(cls: type[T], values: dict[str, Any]) -> T:
    """Build one config section from a flat mapping (extra keys ignored), validating types."""
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        if f.name not in values:
            continue
        raw = values[f.name]
        conv = _converter(_field_type(cls, f))
        try:
            val = conv(raw) if raw is not None else None
        except (TypeError, ValueError):
            raise ConfigError(f"setting {f.name}: cannot read {raw!r}") from None
        if "choices" in f.metadata and val not in f.metadata["choices"]:
            raise ConfigError(f"setting {f.name}: {val!r} is not one of {', '.join(map(str, f.metadata['choices']))}")
        kwargs[f.name] = val
    return cls(**kwargs)


def resolve(args: argparse.Namespace, *classes: type) -> tuple[Any, ...]:
    """Merge YAML (``args.config``) and CLI values into one instance per class.

    Unknown YAML keys are an error (a typo must not silently fall back to a default).
    """
    yaml_values = load_yaml(getattr(args, "config", None))
    known = {f.name for cls in classes for f in dataclasses.fields(cls)}
    unknown = sorted(set(yaml_values) - known)
    if unknown:
        raise ConfigError(f"unknown setting(s) in {args.config}: {', '.join(unknown)}")
    cli_values = {k: v for k, v in vars(args).items() if k in known}
    merged = {**yaml_values, **cli_values}
    for cls in classes:
        for f in dataclasses.fields(cls):
            if f.metadata.get("required") and not merged.get(f.name):
                raise ConfigError(f"--{f.name.replace('_', '-')} is required")
    return tuple(build_config(cls, merged) for cls in classes)


def to_dict(*configs: Any) -> dict[str, Any]:
    """The resolved settings of one or more config sections, for manifests and logs."""
    out: dict[str, Any] = {}
    for c in configs:
        for k, v in dataclasses.asdict(c).items():
            out[k] = list(v) if isinstance(v, tuple) else v
    return out
