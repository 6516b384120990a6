"""spark-submit entry point: `spark-submit jobs/shards.py [same arguments as 'python -m echo shards']`."""

import sys

from echo.cli import run_main
from echo.jobs.shards import main

if __name__ == "__main__":
    sys.exit(run_main(main, sys.argv[1:], prog="shards"))
