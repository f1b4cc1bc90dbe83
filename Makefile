# Two commands do all the set-up on a fresh machine: `make setup`, then `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: setup test lint quickstart

setup:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# The CPU build of torch first, so no resolver pulls a CUDA build afterwards.
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[dev,faces,app,ray]'
	-@if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ] && ! command -v chromium >/dev/null 2>&1; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; fi

test:
	$(BIN)/python -m pytest -q

lint:
	$(BIN)/ruff check .

quickstart:
	$(BIN)/controlkit quickstart
