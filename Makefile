# Customer 360 pipeline. A fresh machine needs only Python 3.11: `make demo`, `make test`.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
# uv comes from PyPI into a private tools venv when it is not on the PATH.
UV := $(shell command -v uv 2>/dev/null || echo .tools/bin/uv)
UV_VERSION := 0.13.9
export UV_PYTHON_DOWNLOADS := never
export RUST_LOG ?= warn
export PYTHONWARNINGS ?= ignore::FutureWarning

.PHONY: help setup demo test test-unit test-fast lint clean airflow airflow-init bench cluster-up cluster-down cluster-status test-cluster

help:  ## list targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

.tools/bin/uv:
	$(PYTHON) -m venv .tools
	.tools/bin/pip install --quiet "uv==$(UV_VERSION)"

.venv/.synced: pyproject.toml uv.lock | $(UV)
	$(UV) sync --frozen --python 3.11
	@touch $@

# The venv's Pythons find Airflow's home (./airflow_home) and the DAGs (./dags) by themselves:
# a .pth file sets AIRFLOW_HOME, AIRFLOW__CORE__DAGS_FOLDER and AIRFLOW__CORE__LOAD_EXAMPLES
# unless they are already set (jobs/airflow_tasks.py), so `.venv/bin/airflow ...` works as is.
.venv/.airflow-env: .venv/.synced jobs/airflow_tasks.py
	$(UV) run --frozen python -c "from jobs.airflow_tasks import install_airflow_env; install_airflow_env()"
	@touch $@

# The Data Docs' browser assets (jQuery, Bootstrap, bootstrap-table, Font Awesome, Vega...) from
# the npm registry, at the versions GE's pages name, into .venv/share/c360/dq-assets; the quality
# steps copy them beside the pages, which then work without internet (c360/docs_assets.py).
.venv/.dq-assets: .venv/.synced c360/docs_assets.py
	$(UV) run --frozen python -m c360.docs_assets install
	@touch $@

setup: .venv/.synced .venv/.airflow-env .venv/.dq-assets  ## install the locked environment into .venv

# The demo targets (demo, airflow) run on a generated bank in development mode, asked for
# here: PII tokens under the public built-in key unless C360_PII_KEY is set. Real data:
# C360_ENV=production make airflow (or any env but development), with a key.
C360_ENV ?= development

demo: setup  ## generate a 10,000-customer bank into ./landing, run every step into ./lake, set up ./airflow_home
	@echo "demo: C360_ENV=$(C360_ENV)$(if $(filter development,$(C360_ENV)), (the public built-in PII key unless C360_PII_KEY is set),)"
	C360_ENV=$(C360_ENV) $(UV) run --frozen c360 demo
	@$(MAKE) --no-print-directory airflow-init
	@echo "Airflow is ready: C360_ENV=$(C360_ENV) .venv/bin/airflow dags test c360_daily 2026-06-30 (or make airflow for the UI)"

# Two pytest-xdist workers by default (one per core of the reference machine), each with its own
# embedded engine; a module's tests stay on one worker (--dist loadfile), so module fixtures
# are built once. TEST_WORKERS=0 runs in one process. The 25 slowest tests are listed at the end.
TEST_WORKERS ?= 2
test: setup  ## run the test suite
	$(UV) run --frozen pytest -q -n $(TEST_WORKERS) --dist loadfile --durations=25

# The unit tier: tests marked `unit` (tests/conftest.py), which need no Spark engine (a unit
# test that asks for it or starts it fails); under a minute.
# ruff's pyflakes rules (unused and undefined names, syntax) and the layer contract of
# .importlinter (dags -> jobs -> models -> features -> c360); .ci/run runs it before the tests.
lint: setup  ## ruff (pyflakes rules) and the import layers (.importlinter)
	$(UV) run --frozen ruff check --select F,E9 .
	$(UV) run --frozen lint-imports

test-unit: setup  ## the unit tier: settings, generator, sentiment, model frame, rules, CSV safety (no Spark)
	$(UV) run --frozen pytest -q -m unit

test-fast: setup  ## the tests without the end-to-end ones
	$(UV) run --frozen pytest -q -m "not slow"

# A Spark standalone cluster on this machine (c360/cluster.py): master, two workers, Spark Connect
# with Delta Lake, from the pyspark wheel in .venv; state and logs in ./.cluster. Then e.g.
# SPARK_REMOTE=$$(jq -r .connect_url .cluster/cluster.json) .venv/bin/c360 run --as-of 2026-06-30
cluster-up: setup  ## start a local Spark standalone cluster + Spark Connect server (prints SPARK_REMOTE)
	$(UV) run --frozen c360 cluster up

cluster-down:  ## stop the cluster started by cluster-up
	$(UV) run --frozen c360 cluster down

cluster-status:  ## the cluster's URLs and live processes
	$(UV) run --frozen c360 cluster status

# The whole pipeline on a cluster the test starts (and stops) itself, and on embedded Sail;
# every gold and marketing table compared (tests/cluster/).
test-cluster: setup  ## pipeline on a local Spark cluster vs embedded Sail, tables compared
	$(UV) run --frozen pytest -q -m cluster --durations=10 tests/cluster

# Benchmark (bench/README.md): generated data goes to BENCH_DIR, results to bench/results/<name>.json|.md.
# e.g. make bench CUSTOMERS=1000000 DAYS=365 BENCH_DIR=/data/bench; a re-run resumes finished phases.
CUSTOMERS ?= 1000000
DAYS ?= 365
BENCH_DIR ?= /tmp/c360-bench
BENCH_ARGS ?=

bench: setup  ## end-to-end benchmark: full + daily run, DuckDB/Sail/JVM, maintenance (CUSTOMERS, DAYS, BENCH_DIR, BENCH_ARGS)
	$(UV) run --frozen python bench/run_bench.py --customers $(CUSTOMERS) --days $(DAYS) --bench-dir $(BENCH_DIR) $(BENCH_ARGS)

# Airflow, local: metadata (SQLite), logs and config in ./airflow_home (git-ignored), DAGs from ./dags.
# c360 tasks share one pool slot, so a few executor workers are plenty (Airflow's default is 32).
AIRFLOW_ENV := AIRFLOW_HOME=$(CURDIR)/airflow_home AIRFLOW__CORE__DAGS_FOLDER=$(CURDIR)/dags \
	AIRFLOW__CORE__LOAD_EXAMPLES=False AIRFLOW__CORE__PARALLELISM=4 C360_ENV=$(C360_ENV)

airflow-init: setup  ## create ./airflow_home (metadata database, the c360_spark pool)
	@mkdir -p airflow_home
	$(AIRFLOW_ENV) $(UV) run --frozen airflow db migrate
	$(AIRFLOW_ENV) $(UV) run --frozen airflow pools set c360_spark 1 "c360 Spark-heavy tasks (one at a time per machine)"

airflow: airflow-init  ## run Airflow (standalone) with the c360 DAGs; UI on http://localhost:8080
	@echo
	@echo "  Airflow UI: http://localhost:8080  user: admin, password: printed below by standalone"
	@echo "  (and kept in airflow_home/simple_auth_manager_passwords.json.generated)"
	@echo "  c360_daily is paused: unpause it to run (catchup from C360_START_DATE, default 2026-06-30), or trigger a date."
	@echo "  Data: ./landing and ./lake (Airflow Variables c360_landing, c360_lake, c360_spark_remote override them)."
	@echo "  Same environment in another shell: $(AIRFLOW_ENV) $(CURDIR)/.venv/bin/airflow ..."
	@echo
	$(AIRFLOW_ENV) $(UV) run --frozen airflow standalone

clean:  ## remove generated data (landing, lake, reports); keeps the environment
	rm -rf landing lake mlruns
