"""User-facing errors: one line, no traceback, non-zero exit."""

from __future__ import annotations


class EchoError(Exception):
    """An error caused by the user's input or environment (bad argument, unreadable
    input, a lake path that is not a Delta lake, ...). The CLI prints ``echo: <message>``
    on one line and exits with :attr:`exit_code`."""

    exit_code = 2


class InputError(EchoError):
    """Missing or unreadable input files."""


class LakeError(EchoError):
    """The lake root or a table in it is unusable."""


class ConfigError(EchoError):
    """A bad setting on the command line or in the YAML config."""
