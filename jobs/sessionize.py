"""spark-submit entry point: `spark-submit jobs/sessionize.py [same arguments as 'python -m echo sessionize']`."""

import sys

from echo.cli import run_main
from echo.jobs.sessionize import main

if __name__ == "__main__":
    sys.exit(run_main(main, sys.argv[1:], prog="sessionize"))
