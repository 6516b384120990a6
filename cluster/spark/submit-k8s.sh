#!/usr/bin/env bash
# Run one Echo stage on Kubernetes with spark-submit, with the same arguments as the CLI:
#
#   K8S_API=https://k8s.example:6443 IMAGE=registry/echo-spark:0.1.0 \
#     cluster/spark/submit-k8s.sh <stage> [args of 'echo-pipeline <stage>']
#
# The Python environment is the container image (cluster/spark/Dockerfile): Spark 4.0,
# a venv with echo installed (/opt/venv), the job files under /opt/echo/jobs, and (with
# DELTA=jars) the delta-spark jars baked in, so pods never resolve Maven at start-up.
#
# Environment (see common.sh for DELTA, SPARK_SUBMIT, EXTRA_CONF, DRY_RUN):
#   MASTER           k8s://$K8S_API (default) or local[N] for a run on this machine
#   K8S_API          API server URL, used when MASTER is not set
#   IMAGE            driver + executor image (required on Kubernetes)
#   NAMESPACE        namespace (default echo)
#   SERVICE_ACCOUNT  service account of the driver, allowed to create executor pods (default spark)
#   APP_DIR          where the image holds the project (default /opt/echo)
#
# Local mode, no Maven, current Python:
#   MASTER=local[2] DELTA=off cluster/spark/submit-k8s.sh ingest --events X --lake Y
set -euo pipefail
# shellcheck source=common.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/common.sh"

[[ $# -ge 1 ]] || { echo_usage >&2; exit 2; }
STAGE="$1"
shift
echo_stage_check "$STAGE"

if [[ -z "${MASTER:-}" ]]; then
    [[ -n "${K8S_API:-}" ]] || echo_die "set K8S_API (the API server URL) or MASTER"
    MASTER="k8s://$K8S_API"
fi
ECHO_ARGS=()

if echo_is_local "$MASTER"; then
    ECHO_APP="$ECHO_ROOT/jobs/$STAGE.py"
    echo_local_args
else
    [[ -n "${IMAGE:-}" ]] || echo_die "set IMAGE (the Echo Spark image, see cluster/spark/Dockerfile)"
    APP_DIR="${APP_DIR:-/opt/echo}"
    ECHO_APP="local://$APP_DIR/jobs/$STAGE.py"
    ECHO_ARGS+=(
        --master "$MASTER"
        --deploy-mode cluster
        --conf "spark.kubernetes.container.image=$IMAGE"
        --conf "spark.kubernetes.namespace=${NAMESPACE:-echo}"
        --conf "spark.kubernetes.authenticate.driver.serviceAccountName=${SERVICE_ACCOUNT:-spark}"
        --conf spark.kubernetes.driverEnv.PYSPARK_PYTHON=/opt/venv/bin/python
        --conf spark.executorEnv.PYSPARK_PYTHON=/opt/venv/bin/python
        # --packages resolves into the driver pod's home; keep Ivy somewhere writable
        --conf spark.jars.ivy=/tmp/.ivy2
    )
fi
echo_delta_args

echo_run "$STAGE" "$@"
