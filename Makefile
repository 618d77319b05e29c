# The two commands of the README:  `make run` (set up + the main job)  and  `make test` (set up + all tests).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip
EXTRAS_RUN  := torch,mobile,charts
EXTRAS_TEST := torch,mobile,dask,charts,dev
RECIPES ?= int8-dynamic; int8-dynamic(per_channel=true); prune(0.5); fold-bn; fold-bn + int8-dynamic
MODEL   ?= digits-cnn

.PHONY: run test bench setup setup-dev clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip

setup: $(BIN)/python
	$(PIP) install -q -e ".[$(EXTRAS_RUN)]" -c constraints.txt

setup-dev: $(BIN)/python
	$(PIP) install -q -e ".[$(EXTRAS_TEST)]" -c constraints.txt

# The main job: the device profile, then a study of the default zoo model, written to artifacts/.
run: setup
	$(BIN)/workbench device
	$(BIN)/workbench run --model $(MODEL) --recipes "$(RECIPES)" --out artifacts/results.csv

test: setup-dev
	$(BIN)/python -m pytest

bench: setup
	$(BIN)/python benchmarks/run.py

clean:
	rm -rf $(VENV) artifacts .pytest_cache
