# vidpipe — two commands on a fresh machine: `make demo` and `make test`.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.setup-stamp
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export PREFECT_HOME ?= $(CURDIR)/.prefect
export PYTHONUNBUFFERED := 1

.PHONY: setup demo test test-all stress bench clean-data ffmpeg

setup: $(STAMP) ffmpeg

# Re-run the install only when pyproject.toml changed (idempotent, seconds when nothing changed).
$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip >/dev/null
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e '.[test]'
	touch $(STAMP)

ffmpeg:
	@if ! command -v ffmpeg >/dev/null || ! command -v ffprobe >/dev/null || ! command -v espeak-ng >/dev/null; then \
	  if [ "$$(id -u)" = "0" ] && command -v apt-get >/dev/null; then \
	    echo "installing ffmpeg + espeak-ng with apt-get"; \
	    (apt-get install -y -q ffmpeg espeak-ng >/dev/null 2>&1 || (apt-get update -q >/dev/null && apt-get install -y -q ffmpeg espeak-ng >/dev/null)); \
	  elif ! command -v ffmpeg >/dev/null || ! command -v ffprobe >/dev/null; then \
	    echo "vidpipe needs ffmpeg and ffprobe on PATH: install them (Debian/Ubuntu: sudo apt-get install ffmpeg espeak-ng; macOS: brew install ffmpeg espeak-ng) and rerun"; exit 1; \
	  fi; \
	fi

demo: setup
	$(VENV)/bin/vidpipe demo

test: setup
	$(VENV)/bin/lint-imports
	$(PY) -m pytest -n 2 -q -m "not slow"

test-all: setup
	$(VENV)/bin/lint-imports
	$(PY) -m pytest -n 2 -q

stress: setup
	$(PY) -m pytest -q -m slow

bench: setup
	$(PY) bench/run_all.py --quick

clean-data:
	rm -rf data/*/ .prefect
