# Two commands do all set-up: `make demo` and `make test`. Everything else is a building block.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
UV_VERSION := 0.13.9
export AIRFLOW_HOME ?= $(CURDIR)/.airflow
export AIRFLOW__CORE__DAGS_FOLDER ?= $(CURDIR)/dags
export AIRFLOW__CORE__PLUGINS_FOLDER ?= $(CURDIR)/plugins
export AIRFLOW__CORE__LOAD_EXAMPLES ?= False
export AIRFLOW__CORE__UNIT_TEST_MODE ?= False
export DO_NOT_TRACK ?= 1
export DBT_SEND_ANONYMOUS_USAGE_STATS ?= False
export RETAIN_DBT_PROJECT_DIR ?= $(CURDIR)/dbt_project
export DBT_PROFILES_DIR ?= $(CURDIR)/dbt_project
MEMBERS ?= 20000
SEED ?= 42

.PHONY: venv lock demo test lint pytest airflow-db bench clean

$(BIN)/.installed: requirements.lock pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q "uv==$(UV_VERSION)"
	$(BIN)/uv pip sync -q --python $(BIN)/python requirements.lock
	$(BIN)/uv pip install -q --python $(BIN)/python --no-deps -e .
	touch $@

venv: $(BIN)/.installed

lock:  ## re-resolve the pins after editing pyproject.toml
	$(BIN)/uv pip compile pyproject.toml --extra dev --python-version 3.11 -o requirements.lock

airflow-db: venv
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/airflow db migrate > /dev/null

demo: venv airflow-db  ## generate sample data, build segments through Airflow, print segment sizes
	$(BIN)/retain data generate --members $(MEMBERS) --seed $(SEED)
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/airflow dags test member_segments > $(AIRFLOW_HOME)/demo-run.log 2>&1 \
	  || (tail -n 60 $(AIRFLOW_HOME)/demo-run.log; exit 1)
	@sed -nE 's/.*DagRun Finished: dag_id=([a-z_]+).*run_duration=([0-9]+)[.0-9]*, state=([a-z]+).*/Airflow: DAG \1 finished \3 in \2 s (log: .airflow\/demo-run.log)/p' \
	  $(AIRFLOW_HOME)/demo-run.log
	$(BIN)/retain segments summary

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

pytest: venv
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/pytest

test: lint pytest

bench: venv  ## every benchmark; numbers are recorded in docs/benchmarks.md (1M members: minutes)
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/python bench/bench_dag_parse.py
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/python bench/bench_rendering.py
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/python bench/bench_segments.py
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/python bench/bench_dispatch.py
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/python bench/bench_channels.py

clean:
	rm -rf $(VENV) .airflow data dbt_project/target dbt_project/logs
