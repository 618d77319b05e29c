# The two commands of the README:  `make run` (set up + the main job)  and  `make test` (set up + all tests).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip
EXTRAS_RUN  := torch,mobile,tf,onnx,openvino,nlp,charts,app,search,images
EXTRAS_TEST := torch,mobile,tf,onnx,openvino,nlp,dask,charts,app,report,search,images,dev
RECIPES ?= int8-dynamic; int8-dynamic(per_channel=true); prune(0.5); fold-bn; fold-bn + int8-dynamic
MODEL   ?= digits-cnn

PORT    ?= 8866

.PHONY: run sweep test lint bench setup setup-dev browser tfjs clean coverage-table

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip

setup: $(BIN)/python
	$(PIP) install -q -e ".[$(EXTRAS_RUN)]" -c constraints.txt

setup-dev: $(BIN)/python
	$(PIP) install -q -e ".[$(EXTRAS_TEST)]" -c constraints.txt

# Debian's Chromium for the browser tests (Playwright drives it; it never downloads a browser).
browser:
	@command -v chromium >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; }

# TF.js for the tfjs runtime, beside the main install, never in it: the converter in its own venv (tfjs/.venv,
# it needs an older TensorFlow) and TF.js's npm packages (tfjs/node_modules), run by Node.js (apt's if none).
tfjs: tfjs/.venv/bin/tensorflowjs_converter tfjs/node_modules/.package-lock.json

tfjs/.venv/bin/tensorflowjs_converter: tfjs/requirements.txt tfjs/constraints.txt
	$(PYTHON) -m venv tfjs/.venv
	tfjs/.venv/bin/python -m pip install -q -r tfjs/requirements.txt -c tfjs/constraints.txt
	@touch $@

tfjs/node_modules/.package-lock.json: tfjs/package-lock.json
	@command -v npm >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm; }
	npm ci --prefix tfjs --no-audit --no-fund --ignore-scripts --loglevel=error

# The main job: the dashboard (Voila) on the default model, at http://127.0.0.1:$(PORT)/
run: setup
	$(BIN)/workbench app --model $(MODEL) --port $(PORT)

# A sweep from the shell instead of the dashboard, written to artifacts/results.csv
sweep: setup
	$(BIN)/workbench device
	$(BIN)/workbench run --model $(MODEL) --recipes "$(RECIPES)" --out artifacts/results.csv

test: setup-dev browser tfjs
	$(BIN)/ruff check .
	$(BIN)/python -m pytest

# Rewrites the README's "What runs on what" table from a fresh run of the coverage matrix
coverage-table: setup-dev
	WORKBENCH_WRITE_README=1 $(BIN)/python -m pytest tests/test_coverage.py

lint: setup-dev
	$(BIN)/ruff check .

bench: setup-dev browser tfjs
	$(BIN)/python benchmarks/run.py

clean:
	rm -rf $(VENV) artifacts .pytest_cache tfjs/.venv tfjs/node_modules
