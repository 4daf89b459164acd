# The verbs a newcomer needs. `make run` and `make test` work on a fresh machine.
VENV ?= .venv
PYTHON ?= python3
# The CPU build by default. On a CUDA machine: make TORCH="torch==2.13.0" TORCH_INDEX=https://download.pytorch.org/whl/cu126
TORCH ?= torch==2.13.0
TORCH_INDEX ?=
BIN := $(VENV)/bin
STAMP := $(VENV)/.twin-installed

.PHONY: run test lint format bench demo install clean

run: $(STAMP)  ## set up, then start the web app on http://127.0.0.1:8765 (it migrates first)
	$(BIN)/twin serve

test: $(STAMP)  ## the whole test suite (what CI runs)
	$(BIN)/python -m pytest -q -n 2 --dist loadgroup

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

demo: $(STAMP)  ## the sample export → dataset → base model → train → eval → a chat reply, timed
	$(BIN)/python scripts/demo.py

bench: $(STAMP)  ## every benchmark; figures are printed (see bench/README.md)
	for script in bench/bench_*.py; do echo "== $$script"; $(BIN)/python $$script || exit 1; done

install: $(STAMP)

# torch goes in first and on its own: asked for through litgpt, pip would pull a multi-GB
# CUDA build even on machines without a GPU.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "$(TORCH)" $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	# Test-only reference implementations. Not in pyproject: transformers 5.x (whose GGUF loader
	# reads Gemma 3 correctly) needs huggingface-hub>=1.31 while litgpt pins <1.4 for downloads,
	# which twin never makes; litgpt works with the newer hub.
	$(BIN)/python -m pip install --quiet "transformers==5.24.0" "accelerate==1.15.0"
	touch $@

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis test-artifacts
