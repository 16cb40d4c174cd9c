# Two entry points: `make demo` and `make test`. Both create .venv when it is missing.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo docs test test-fast test-postgres lint bench-fidelity evidence evidence-report clean-venv

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# The CPU build of torch first: a plain `torch` would pull a multi-GB CUDA build.
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e ".[dev,trl,postgres,docs]" "mujoco>=3.2,<4"
	# Optional: torchsort (soft-rank parity tests, alternative backend). It compiles at install;
	# nvcc is hidden so it builds for the CPU. A failure here only skips the parity tests.
	-PATH=$(CURDIR)/$(BIN):/usr/bin:/bin $(BIN)/pip install --quiet ninja setuptools wheel \
	  && PATH=$(CURDIR)/$(BIN):/usr/bin:/bin $(BIN)/pip install --quiet --no-build-isolation \
	  torchsort==0.1.10 || echo "torchsort not installed: its parity tests will be skipped"
	# Optional: SBX and JAX (--backend sbx, the [jax] extra; ~25 s here). A failure here only
	# skips the SBX tests.
	-$(BIN)/pip install --quiet -e ".[jax]" || echo "SBX not installed: its tests will be skipped"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/ratingrl demo

# The documentation site, into site/: strict, so a broken link, a missing page or an API entry
# naming no module fails (tests/test_docs.py checks every public module has an entry). ~10 s.
# Not --quiet: it hides the warnings that --strict counts, and the build then passes.
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

# The rating app's tests run on SQLite and on PostgreSQL: a throwaway server (Debian's
# postgresql, installed when missing) lives for the test run only (scripts/with_postgres.sh).
test: $(STAMP)
	# Debian's chromium for the rating app's browser test (Playwright drives it; no download).
	-sh scripts/install_chromium.sh
	sh scripts/install_postgresql.sh
	$(BIN)/ruff check src tests examples benchmarks
	$(MAKE) --no-print-directory docs
	scripts/with_postgres.sh $(BIN)/python -m pytest -q src tests

# The edit loop: everything but the tests marked slow (end-to-end training, browser, benchmarks)
# and the PostgreSQL copies of the app's database tests (they double the app tests' time; CI and
# `make test` run them, `make test-postgres` runs them alone).
test-fast: $(STAMP)
	$(BIN)/ruff check src tests examples benchmarks
	$(BIN)/python -m pytest -q -m "not slow and not postgres" src tests

test-postgres: $(STAMP)
	sh scripts/install_postgresql.sh
	scripts/with_postgres.sh $(BIN)/python -m pytest -q -m postgres tests

lint: $(STAMP)
	$(BIN)/ruff check src tests examples benchmarks

bench-fidelity: $(STAMP)
	benchmarks/fidelity_sweep.sh benchmarks/results

# The policy evidence (hours of compute; stop and start again at will: finished trials are
# skipped, stopped ones resume). One Ray instance per sweep, one CPU each, both at once.
evidence: $(STAMP)
	OMP_NUM_THREADS=1 $(BIN)/ratingrl sweep examples/sweeps/sac300k.toml --store runs/evidence --cpus 1 & \
	OMP_NUM_THREADS=1 $(BIN)/ratingrl sweep examples/sweeps/ppo1m.toml --store runs/evidence --cpus 1; \
	wait

# The committed report of whatever has finished so far.
evidence-report: $(STAMP)
	$(BIN)/ratingrl report runs/evidence --out reports/evidence

# The sdist and the wheel, into dist/: python -m build makes the sdist, then the wheel from the
# unpacked sdist (so a file the sdist lacks fails here); twine checks the metadata PyPI would show.
.PHONY: dist
dist: $(STAMP)
	rm -rf dist
	$(BIN)/python -m build --outdir dist .
	$(BIN)/twine check --strict dist/*

clean-venv:
	rm -rf $(VENV)
