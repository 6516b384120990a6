#!/usr/bin/env bash
# Run one Echo stage on YARN with spark-submit, with the same arguments as the CLI:
#
#   cluster/spark/submit-yarn.sh <stage> [args of 'echo-pipeline <stage>']
#   cluster/spark/submit-yarn.sh run --events s3://bucket/events/2025-01-01/ --lake s3://bucket/lake
#
# The Python environment travels as a venv-pack archive (build it with build-env.sh):
# YARN unpacks it as ./environment in every container and the driver and executors run
# ./environment/bin/python, which has echo and its dependencies installed.
#
# Environment (see common.sh for DELTA, SPARK_SUBMIT, EXTRA_CONF, DRY_RUN):
#   MASTER       yarn (default) or local[N] for a run on this machine (tests, smoke checks)
#   DEPLOY_MODE  cluster (default; the driver runs in a YARN container) or client
#   ENV_ARCHIVE  the venv-pack archive (default cluster/spark/dist/echo-env.tar.gz)
#   QUEUE        YARN queue (default: the cluster's default queue)
#
# Local mode, no Maven, current Python:
#   MASTER=local[2] DELTA=off cluster/spark/submit-yarn.sh run --events X --lake Y
set -euo pipefail
# shellcheck source=common.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/common.sh"

[[ $# -ge 1 ]] || { echo_usage >&2; exit 2; }
STAGE="$1"
shift
echo_stage_check "$STAGE"

MASTER="${MASTER:-yarn}"
ECHO_APP="$ECHO_ROOT/jobs/$STAGE.py"
ECHO_ARGS=()

if echo_is_local "$MASTER"; then
    echo_local_args
else
    DEPLOY_MODE="${DEPLOY_MODE:-cluster}"
    ENV_ARCHIVE="${ENV_ARCHIVE:-$ECHO_CLUSTER_DIR/dist/echo-env.tar.gz}"
    if [[ "${DRY_RUN:-0}" != "1" && ! -f "$ENV_ARCHIVE" && "$ENV_ARCHIVE" != *://* ]]; then
        echo_die "no Python environment archive at $ENV_ARCHIVE (run cluster/spark/build-env.sh, or set ENV_ARCHIVE)"
    fi
    ECHO_ARGS+=(
        --master "$MASTER"
        --deploy-mode "$DEPLOY_MODE"
        --archives "$ENV_ARCHIVE#environment"
        --conf spark.executorEnv.PYSPARK_PYTHON=./environment/bin/python
        --conf spark.yarn.appMasterEnv.PYSPARK_PYTHON=./environment/bin/python
    )
    if [[ "$DEPLOY_MODE" == "client" ]]; then
        # the driver runs here: it needs its own Python with echo installed
        export PYSPARK_DRIVER_PYTHON="${PYTHON:-$(command -v python || command -v python3)}"
    fi
    export PYSPARK_PYTHON=./environment/bin/python
    [[ -n "${QUEUE:-}" ]] && ECHO_ARGS+=(--queue "$QUEUE")
fi
echo_delta_args

echo_run "$STAGE" "$@"
