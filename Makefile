# Two entry points: `make demo` and `make test`. Both create .venv when it is missing.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench clean-venv

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# The CPU build of torch first: a plain `torch` would pull a multi-GB CUDA build.
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e ".[dev]" "mujoco>=3.2,<4"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/ratingrl demo

test: $(STAMP)
	$(BIN)/ruff check src tests examples benchmarks
	$(BIN)/python -m pytest -q src tests

lint: $(STAMP)
	$(BIN)/ruff check src tests examples benchmarks

clean-venv:
	rm -rf $(VENV)
