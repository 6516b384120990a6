"""spark-submit entry point: `spark-submit jobs/forget.py [same arguments as 'python -m echo forget']`."""

import sys

from echo.cli import run_main
from echo.jobs.forget import main

if __name__ == "__main__":
    sys.exit(run_main(main, sys.argv[1:], prog="forget"))
