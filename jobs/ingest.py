"""spark-submit entry point: `spark-submit jobs/ingest.py [same arguments as 'python -m echo ingest']`."""

import sys

from echo.cli import run_main
from echo.jobs.ingest import main

if __name__ == "__main__":
    sys.exit(run_main(main, sys.argv[1:], prog="ingest"))
