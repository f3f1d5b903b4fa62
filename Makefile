# Two entry points: `make demo` (set up .venv, run the main job) and `make test` (set up, run the suite).
PYTHON ?= python3
VENV ?= .venv
# The CPU build of torch 2.13.0 is on local disk on our machines; override elsewhere if needed.
TORCH_SPEC ?= torch==2.13.0
BIN := $(VENV)/bin
STAMP := $(VENV)/.seem-installed

.PHONY: install demo test bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "$(TORCH_SPEC)"
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/python examples/demo.py

test: $(STAMP)
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_latency.py

clean:
	rm -rf $(VENV) demo_out .pytest_cache
