# radguard: two commands set everything up on a fresh machine.
#   make demo   install into .venv and de-identify a sample set built from pydicom's files
#   make test   install (with dev tools) and run ruff, mypy and the test suite
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_IN := demo-in
DEMO_OUT := demo-out

.PHONY: demo test install lint typecheck clean bench

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev,all]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	rm -rf $(DEMO_IN) $(DEMO_OUT) $(DEMO_OUT).run
	RADGUARD_HOME=$(CURDIR)/.radguard $(BIN)/radguard sample $(DEMO_IN)
	RADGUARD_HOME=$(CURDIR)/.radguard $(BIN)/radguard deid $(DEMO_IN) $(DEMO_OUT) --quarantine; \
	  rc=$$?; echo "radguard deid exit code: $$rc (1 = some odd sample files were quarantined, by design)"; \
	  test $$rc -le 1
	@echo "--- why files were not released (from $(DEMO_OUT).run/manifest.jsonl):"
	@$(BIN)/python -c "import json; [print(f\"{l['status']:12} {l['input']}: {l['reasons'][0]}\") for l in map(json.loads, open('$(DEMO_OUT).run/manifest.jsonl')) if l['status'] != 'released']"
	@echo "--- released tree (first entries):"
	@find $(DEMO_OUT) -name '*.dcm' | sort | head -5
	@echo "--- prove it: search every released file for what is left of the originals"
	$(BIN)/radguard verify $(DEMO_IN) $(DEMO_OUT) --report $(DEMO_OUT).run/verify.html
	@echo "--- re-identification risk of the released set"
	$(BIN)/radguard risk $(DEMO_OUT) --population 100000

lint: $(STAMP)
	$(BIN)/ruff check src tests scripts bench
	$(BIN)/ruff format --check src tests scripts bench

typecheck: $(STAMP)
	$(BIN)/mypy

test: $(STAMP) lint typecheck
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	$(BIN)/python bench/bench_deid.py

clean:
	rm -rf $(VENV) $(DEMO_IN) $(DEMO_OUT) $(DEMO_OUT).run .radguard .pytest_cache .mypy_cache .ruff_cache
