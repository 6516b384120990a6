"""spark-submit entry point: `spark-submit jobs/track.py [same arguments as 'python -m echo track']`."""

import sys

from echo.cli import run_main
from echo.jobs.track import main

if __name__ == "__main__":
    sys.exit(run_main(main, sys.argv[1:], prog="track"))
