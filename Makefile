# The three commands of the README. VENV can be overridden: make VENV=/path/to/venv test
VENV ?= .venv
PY := $(VENV)/bin/python
CONFIG ?= configs/vita/synthetic_R18.yaml

.PHONY: setup test train lint format
setup:  ## create $(VENV) with Python 3.10, install the pinned stack and vis_zoo (editable)
	VENV=$(VENV) scripts/setup_env.sh

test:  ## the whole test suite (CPU, tiny synthetic inputs)
	# One thread per process: the suite runs many small ops and subprocesses on 2 cores, where
	# intra-op threading only adds contention (measured up to ~10x slower on a loaded machine).
	OMP_NUM_THREADS=1 $(PY) -m pytest -q tests

train:  ## the main job: train + evaluate a method on the built-in synthetic dataset, into the config's OUTPUT_DIR
	$(PY) tools/train_net.py --config-file $(CONFIG)

lint:  ## ruff: pyflakes + pycodestyle at line length 100, and the formatting (settings in ruff.toml)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format:  ## rewrite the tree in the project's format, then fix what `ruff check` still reports
	$(VENV)/bin/ruff format .
