# shellcheck shell=bash
# Shared by submit-yarn.sh and submit-k8s.sh (sourced, not run). Builds the spark-submit
# command line for one Echo stage: `jobs/<stage>.py` + the stage's own CLI arguments.
#
# Environment (all optional):
#   MASTER          Spark master (the caller's default: yarn, k8s://...). local[N] runs the
#                   job on this machine with the current Python: no archive, no image.
#   DELTA           on   : --packages $DELTA_PACKAGE + Delta's two session settings (default)
#                   jars : the settings, plus --jars $ECHO_DELTA_JARS when set; without it
#                          the jars are already on the classpath (image)
#                   off  : neither; the job uses the embedded delta-rs backend (local tests,
#                          machines that cannot reach Maven)
#   DELTA_PACKAGE   Maven coordinate of delta-spark (default io.delta:delta-spark_2.13:4.0.0)
#   ECHO_DELTA_JARS comma-separated local jar files (delta-spark_2.13-4.0.0.jar,
#                   delta-storage-4.0.0.jar): DELTA=jars passes them with --jars (machines
#                   that cannot reach Maven); the same variable the tests and the CLI read
#   SPARK_SUBMIT    spark-submit to use (default: the one on PATH, else .venv/bin/spark-submit)
#   PYTHON          Python for local mode (default: the python on PATH)
#   SPARK_CONF_FILE properties file (default: cluster/spark/spark-defaults.conf)
#   EXTRA_CONF      more spark-submit options, word-split (e.g. "--conf spark.executor.instances=200")
#   DRY_RUN=1       print the command instead of running it

set -euo pipefail

ECHO_CLUSTER_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ECHO_ROOT="$(cd "$ECHO_CLUSTER_DIR/../.." && pwd)"
DELTA="${DELTA:-on}"
DELTA_PACKAGE="${DELTA_PACKAGE:-io.delta:delta-spark_2.13:4.0.0}"
SPARK_CONF_FILE="${SPARK_CONF_FILE:-$ECHO_CLUSTER_DIR/spark-defaults.conf}"

echo_die() {
    echo "$(basename "$0"): error: $*" >&2
    exit 2
}

echo_usage() {
    local stages
    stages="$(cd "$ECHO_ROOT/jobs" && ls -1 ./*.py | sed 's|^\./||; s|\.py$||' | grep -vx train | tr '\n' ' ')"
    echo "usage: $(basename "$0") <stage> [stage arguments, as for 'echo-pipeline <stage>']"
    echo "stages: $stages"
    echo "example: MASTER=local[2] DELTA=off $(basename "$0") run --events data/ --lake /tmp/lake"
}

# echo_stage_check STAGE: the stage must have a spark-submit entry point jobs/<stage>.py
echo_stage_check() {
    local stage="$1"
    case "$stage" in
        -h|--help|"") echo_usage; exit 0 ;;
    esac
    [[ "$stage" =~ ^[a-z_]+$ ]] || echo_die "bad stage name '$stage'"
    [[ "$stage" != train ]] || echo_die "train runs on Ray, not Spark: see cluster/ray/README.md"
    [[ -f "$ECHO_ROOT/jobs/$stage.py" ]] || { echo_usage >&2; echo_die "unknown stage '$stage' (no jobs/$stage.py)"; }
}

echo_spark_submit() {
    if [[ -n "${SPARK_SUBMIT:-}" ]]; then
        echo "$SPARK_SUBMIT"
    elif command -v spark-submit >/dev/null 2>&1; then
        command -v spark-submit
    elif [[ -x "$ECHO_ROOT/.venv/bin/spark-submit" ]]; then
        echo "$ECHO_ROOT/.venv/bin/spark-submit"
    else
        echo_die "spark-submit not found: set SPARK_SUBMIT or install pyspark"
    fi
}

echo_is_local() {
    [[ "$1" == local* ]]
}

# echo_delta_args: append the Delta options to the array ECHO_ARGS
echo_delta_args() {
    case "$DELTA" in
        on)  ECHO_ARGS+=(--packages "$DELTA_PACKAGE") ;;
        jars)
            if [[ -n "${ECHO_DELTA_JARS:-}" ]]; then
                local jar
                local -a jars
                IFS=, read -r -a jars <<<"$ECHO_DELTA_JARS"
                for jar in "${jars[@]}"; do
                    [[ "$jar" == *://* || -f "$jar" ]] || echo_die "ECHO_DELTA_JARS: no such jar file: $jar"
                done
                ECHO_ARGS+=(--jars "$ECHO_DELTA_JARS")
            fi
            ;;
        off) return 0 ;;
        *) echo_die "DELTA must be on, jars or off (got '$DELTA')" ;;
    esac
    # Delta's SQL extension (MERGE/OPTIMIZE/time travel SQL) and catalog (delta.`path`
    # identifiers, CREATE TABLE ... USING delta): what open_lake checks for delta-spark.
    ECHO_ARGS+=(
        --conf spark.sql.extensions=io.delta.sql.DeltaSparkSessionExtension
        --conf spark.sql.catalog.spark_catalog=org.apache.spark.sql.delta.catalog.DeltaCatalog
    )
}

# echo_local_args: local mode on this machine: current Python, few partitions.
echo_local_args() {
    local py="${PYTHON:-$(command -v python || command -v python3)}"
    export PYSPARK_PYTHON="$py" PYSPARK_DRIVER_PYTHON="$py"
    ECHO_ARGS+=(
        --master "$MASTER"
        --conf spark.sql.shuffle.partitions=4
        --conf spark.default.parallelism=2
        --conf spark.sql.adaptive.advisoryPartitionSizeInBytes=8m
        --conf spark.ui.enabled=false
        --conf spark.ui.showConsoleProgress=false
        --driver-memory "${DRIVER_MEMORY:-2g}"
    )
}

# echo_run STAGE ARGS...: run (or print) the assembled command
echo_run() {
    local stage="$1"
    shift
    local submit
    submit="$(echo_spark_submit)"
    local cmd=("$submit" --properties-file "$SPARK_CONF_FILE" --name "echo-$stage" "${ECHO_ARGS[@]}")
    if [[ -n "${EXTRA_CONF:-}" ]]; then
        # shellcheck disable=SC2206
        local extra=($EXTRA_CONF)
        cmd+=("${extra[@]}")
    fi
    cmd+=("$ECHO_APP" "$@")
    if [[ "${DRY_RUN:-0}" == "1" ]]; then
        printf '%q ' "${cmd[@]}"
        printf '\n'
        return 0
    fi
    exec "${cmd[@]}"
}
