"""spark-submit entry point: `spark-submit jobs/run.py [same arguments as 'python -m echo run']`."""

import sys

from echo.cli import run_main
from echo.jobs.run import main

if __name__ == "__main__":
    sys.exit(run_main(main, sys.argv[1:], prog="run"))
