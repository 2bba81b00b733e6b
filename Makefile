# Two commands on a fresh machine: `make up` and `make test`. Everything else is a helper for them.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
export ONNXVEC_HOME ?= $(CURDIR)/.onnxvec

.PHONY: up test install model lint bench clean

$(BIN)/onnxvec: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -e '.[dev,build]'
	touch $@

install: $(BIN)/onnxvec

model: install
	$(BIN)/onnxvec models pull all-MiniLM-L6-v2
	$(BIN)/onnxvec models pull SmolLM2-135M-Instruct

up: model
	$(BIN)/onnxvec up

test: install
	$(BIN)/pytest

lint: install
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

bench: model
	$(BIN)/python -m pip install --quiet -e '.[dev,build,bench]'
	$(BIN)/python bench/embed.py
	$(BIN)/python bench/peers.py
	$(BIN)/python bench/ingest.py
	$(BIN)/python bench/api.py
	$(BIN)/python bench/chat.py
	$(BIN)/python bench/search.py

clean:
	-$(BIN)/onnxvec services stop
	rm -rf $(VENV) .onnxvec
