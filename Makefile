# Samen: `make serve` runs a server on the embedded store; `make test` runs the whole suite.
# Both create the virtual environment and install what they need on first use.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
JS     := tests/js
HOST   ?= 127.0.0.1
PORT   ?= 8000

.PHONY: install serve test lint typecheck clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# The real npm Yjs clients the integration tests drive (yjs, y-websocket, @hocuspocus/provider 2/3/4).
$(JS)/node_modules/.installed: $(JS)/package.json $(JS)/package-lock.json
	cd $(JS) && npm ci --no-audit --no-fund --loglevel=error
	touch $@

install: $(STAMP)

serve: $(STAMP)
	$(BIN)/samen serve --host $(HOST) --port $(PORT)

lint: $(STAMP)
	$(BIN)/ruff check protocol crdt server clients tests benchmarks
	$(BIN)/mypy

test: $(STAMP) $(JS)/node_modules/.installed lint
	$(BIN)/python -m pytest -q -p no:cacheprovider

clean:
	rm -rf $(VENV) $(JS)/node_modules data
