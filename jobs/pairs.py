"""spark-submit entry point: `spark-submit jobs/pairs.py [same arguments as 'python -m echo pairs']`."""

import sys

from echo.cli import run_main
from echo.jobs.pairs import main

if __name__ == "__main__":
    sys.exit(run_main(main, sys.argv[1:], prog="pairs"))
