"""spark-submit entry point: `spark-submit jobs/graph.py [same arguments as 'python -m echo graph']`."""

import sys

from echo.cli import run_main
from echo.jobs.graph import main

if __name__ == "__main__":
    sys.exit(run_main(main, sys.argv[1:], prog="graph"))
