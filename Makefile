# Echo: the two commands of the README are `make demo` and `make test`.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# torch is pinned so pip takes the local CPU wheel instead of a CUDA build
INSTALL := "torch==2.13.0" -e ".[all]"

.PHONY: setup demo test test-slow test-delta-spark lint bench clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install $(INSTALL)
	touch $@

# the experience loop at demo size (docs/experiment.md); a fresh demo/ each time
demo: setup
	rm -rf demo
	$(BIN)/echo-pipeline demo --out demo

test: setup
	$(BIN)/python -m pytest

# the slow end-to-end tests the default run leaves out (every crash boundary, ...), the
# property test of random batch splits with 10 examples
test-slow: setup
	ECHO_PROPERTY_EXAMPLES=10 $(BIN)/python -m pytest -m slow

# the delta-spark cases, with Delta's jars as local files (README, docs/deploy.md):
#   ECHO_DELTA_JARS=delta-spark_2.13-4.0.0.jar,delta-storage-4.0.0.jar make test-delta-spark
test-delta-spark: setup
	@test -n "$$ECHO_DELTA_JARS" || { echo "set ECHO_DELTA_JARS=delta-spark_2.13-4.0.0.jar,delta-storage-4.0.0.jar" >&2; exit 2; }
	$(BIN)/python -m pytest -m delta_spark

lint: setup
	$(BIN)/ruff check echo jobs tests benchmarks
	$(BIN)/mypy echo
	$(BIN)/lint-imports

clean:
	rm -rf demo .pytest_cache .mypy_cache .ruff_cache spark-warehouse
