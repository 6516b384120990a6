"""Ray job entry for training: ``ray job submit --working-dir . -- python jobs/train.py ARGS``.

Thin wrapper around :func:`echo.train.cli.main` (same arguments as
``python -m echo train``); inside a Ray job ``ray.init()`` attaches to the cluster. Ray
puts the job's ``--working-dir`` (the project root) first on ``PYTHONPATH``, so ``echo``
imports from it as it does from an installed package.
"""

from __future__ import annotations

import sys

from echo.cli import run_main
from echo.train.cli import main

if __name__ == "__main__":
    sys.exit(run_main(main, sys.argv[1:], prog="jobs/train.py"))
