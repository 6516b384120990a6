"""spark-submit entry point: `spark-submit jobs/forecast.py [same arguments as 'python -m echo forecast']`."""

import sys

from echo.cli import run_main
from echo.jobs.forecast import main

if __name__ == "__main__":
    sys.exit(run_main(main, sys.argv[1:], prog="forecast"))
