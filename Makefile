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
# cosmos runs `dbt ls` when member_segments is parsed: seconds on a quiet machine, more under load
export AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT ?= 120
export DO_NOT_TRACK ?= 1
export DBT_SEND_ANONYMOUS_USAGE_STATS ?= False
export RETAIN_DBT_PROJECT_DIR ?= $(CURDIR)/dbt_project
export DBT_PROFILES_DIR ?= $(CURDIR)/dbt_project
MEMBERS ?= 20000
SEED ?= 42
DEMO_PROVIDER = $(if $(AIRFLOW_CONN_SENDGRID_DEFAULT),SendGrid,outbox files in data/outbox)

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

demo: venv airflow-db  ## sample data, segments through Airflow, every journey and a manual campaign, measured
	$(BIN)/retain data generate --members $(MEMBERS) --seed $(SEED)
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/airflow dags test member_segments > $(AIRFLOW_HOME)/demo-run.log 2>&1 \
	  || (tail -n 60 $(AIRFLOW_HOME)/demo-run.log; exit 1)
	@sed -nE 's/.*DagRun Finished: dag_id=([a-z_]+).*run_duration=([0-9]+)[.0-9]*, state=([a-z]+).*/Airflow: DAG \1 finished \3 in \2 s (log: .airflow\/demo-run.log)/p' \
	  $(AIRFLOW_HOME)/demo-run.log
	$(BIN)/retain segments summary
	$(BIN)/retain campaigns validate
	@echo; echo "== Every lifecycle journey once, highest priority first (provider: $(DEMO_PROVIDER)) =="
	@for journey in $$($(BIN)/retain campaigns list --kind journey --names); do \
	  echo; echo "-- retain send $$journey"; $(BIN)/retain send $$journey || exit 1; done
	@echo; echo "== A manual campaign: dry run first, then the real send (its 10% pilot) =="
	$(BIN)/retain send spring_sale --dry-run
	$(BIN)/retain send spring_sale
	@echo; echo "== Simulated provider events and conversions, the ledger copied into the warehouse =="
	@for campaign in spring_sale $$($(BIN)/retain campaigns list --kind journey --names | sed 's/^/journey:/'); do \
	  $(BIN)/retain demo events $$campaign --seed $(SEED) || exit 1; done
	$(BIN)/retain ledger sync
	cd dbt_project && PATH=$(CURDIR)/$(BIN):$$PATH RETAIN_WAREHOUSE=$(CURDIR)/data/warehouse.duckdb \
	  RETAIN_LANDING_DIR=$(CURDIR)/data/landing $(CURDIR)/$(BIN)/dbt build --quiet \
	  --select +campaign_performance +journey_performance
	$(BIN)/retain report spring_sale
	$(BIN)/retain report journey:win_back

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
