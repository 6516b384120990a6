"""Echo: turn code-completion telemetry into training signal (Spark + Delta + Ray).

Importing :mod:`echo` is cheap: it needs only the Spark extra at most, and heavy
dependencies (torch, ray, deepspeed) are imported inside :mod:`echo.train` only.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
