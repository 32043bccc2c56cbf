# Two commands for a fresh machine: `make demo` and `make test`. Both create .venv when it
# is missing, reuse it when present, install the project editable, then run.
# Maintainers: `make bench` (benchmarks), `make notebooks` (re-run the notebooks and export
# their rendered copies to notebooks/rendered/, with the `notebooks` extra).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-dev

.PHONY: demo test bench notebooks lint venv clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install "torch>=2.1" "torchvision>=0.16"
	$(BIN)/python -m pip install -e ".[dev,shards]"
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/dsm study --config examples/configs/study_synthetic.yaml

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest

bench: $(STAMP)
	$(BIN)/python -m benchmarks.run

notebooks: $(STAMP)
	$(BIN)/python -m pip install -e ".[notebooks]"
	$(BIN)/python notebooks/render.py

lint: $(STAMP)
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) build dist *.egg-info src/*.egg-info
