# Two commands on a fresh clone: `make demo` and `make test`. Both create .venv when missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_DIR ?= data/demo
WORKSPACE ?= data/workspace
DEMO_WORKSPACE ?= data/demo-workspace

.PHONY: setup test demo lint ui clean

# torch/torchvision come from this machine's local wheel cache with plain pip (never uv/poetry).
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==2.14.1 torchvision==0.29.1
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $(STAMP)

setup: $(STAMP)

test: setup
	$(BIN)/python -m pytest

lint: setup
	$(BIN)/ruff check src tests scripts
	$(BIN)/ruff format --check src tests scripts

demo: setup
	bash scripts/demo.sh $(DEMO_DIR) $(DEMO_WORKSPACE)

ui: setup
	$(BIN)/mlflow ui --backend-store-uri sqlite:///$(abspath $(WORKSPACE))/mlflow.db --host 127.0.0.1 --port 5000

clean:
	rm -rf $(DEMO_DIR) $(DEMO_WORKSPACE)
