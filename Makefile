# The toolkit's two commands: `make run` and `make test`. Both set everything up first.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000
SUDO := $(shell [ "$$(id -u)" -eq 0 ] || echo sudo)

.PHONY: run test install browser schema bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: requirements.txt | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
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

bench: install
	$(BIN)/python bench/demo_run.py
	$(BIN)/python bench/training_overhead.py
	$(BIN)/python bench/default_settings.py
	$(BIN)/python bench/dicom_ingest.py
	$(BIN)/python bench/upload_memory.py
	$(BIN)/python bench/large_dataset_pages.py
	$(BIN)/python bench/loader_throughput.py
	$(BIN)/python bench/web_memory.py
	$(BIN)/python bench/live_latency.py

clean:
	rm -rf $(VENV) var test-artifacts
