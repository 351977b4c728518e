# Two-command quickstart: `make demo` and `make test` each set up .venv on a fresh machine.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
REF_STAMP := $(VENV)/.reference

.PHONY: demo test install reference bench clean

# --no-compile: Python compiles only the modules it imports, on first import, instead of every file
# of every package at install (a fresh venv: 77 s -> about 31 s on the 2-core VM; BENCHMARKS.md 14b)
$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q --no-compile -e ".[dev]"
	touch $(STAMP)

# torch (CPU build) + xautodl for the equivalence tests and benchmarks; xautodl's numpy pin is stale.
$(REF_STAMP): $(STAMP)
	$(BIN)/pip install -q --no-compile "torch==2.13.0"
	$(BIN)/pip install -q --no-deps xautodl
	touch $(REF_STAMP)

install: $(STAMP)
reference: $(REF_STAMP)

demo: $(STAMP)
	$(BIN)/python -m jaxnas demo

# pytest-xdist workers (whole test files per worker, so module fixtures compile once); 0: one process
TEST_WORKERS ?= 2

test: $(REF_STAMP)
	$(BIN)/ruff check jaxnas tests benchmarks experiments tools
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile --durations=25 tests

bench: $(REF_STAMP)
	mkdir -p benchmarks/results
	$(BIN)/python benchmarks/bench_naswot.py --archs 32 --block 16 --out benchmarks/results/naswot_cpu.json
	$(BIN)/python benchmarks/bench_setn.py --out benchmarks/results/setn_cpu.json
	$(BIN)/python benchmarks/bench_smash.py --out benchmarks/results/smash_cpu.json
	$(BIN)/python benchmarks/bench_single_path.py --out benchmarks/results/single_path_cpu.json

clean:
	rm -rf $(VENV) .pytest_cache
