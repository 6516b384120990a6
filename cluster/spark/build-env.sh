#!/usr/bin/env bash
# Build what the clusters run:
#   dist/echo_pipeline-*.whl      the project's wheel (also what Databricks installs)
#   dist/echo-env.tar.gz          a venv-pack archive for YARN (--archives ...#environment)
#
#   cluster/spark/build-env.sh            # both
#   cluster/spark/build-env.sh wheel      # the wheel only
#
# The archive must be built on the cluster's OS and CPU architecture with the cluster's
# Python minor version (3.11 here): it holds compiled wheels (pyarrow, pandas, numpy).
# For Kubernetes, build the image instead: docker build -f cluster/spark/Dockerfile .
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
DIST="$HERE/dist"
PY="${PYTHON:-python3}"
mkdir -p "$DIST"

"$PY" -m pip wheel --no-deps --wheel-dir "$DIST" "$ROOT"
[[ "${1:-all}" == wheel ]] && exit 0

BUILD="$(mktemp -d)"
trap 'rm -rf "$BUILD"' EXIT
"$PY" -m venv "$BUILD/venv"
"$BUILD/venv/bin/pip" install --quiet --upgrade pip venv-pack
# the spark extra brings pyspark (the Python side; the cluster's Spark runs the JVM),
# delta-spark's Python API and deltalake
WHEEL="$(ls -t "$DIST"/echo_pipeline-*.whl | head -1)"
"$BUILD/venv/bin/pip" install --quiet "${WHEEL}[spark]"
"$BUILD/venv/bin/python" -c "import echo.jobs.run, pyarrow, pandas, rapidfuzz"
"$BUILD/venv/bin/venv-pack" --python-prefix ./environment -p "$BUILD/venv" -o "$DIST/echo-env.tar.gz" --force
echo "built $DIST/echo-env.tar.gz"
