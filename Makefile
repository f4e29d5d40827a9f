# Two commands for a fresh machine: `make run` and `make test`. Each creates .venv when missing.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
CONSTRAINTS := constraints.txt
export QT_API := pyside6

.PHONY: run test test-fast install install-test bench bench-quick demo-model methods-table package package-cpu clean lint

$(PY):
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: $(PY) pyproject.toml $(CONSTRAINTS)
	$(PIP) install -c $(CONSTRAINTS) -e .
	touch $@

$(VENV)/.installed-test: $(PY) pyproject.toml $(CONSTRAINTS)
	$(PIP) install -c $(CONSTRAINTS) -e '.[test]'
	touch $(VENV)/.installed $@

install: $(VENV)/.installed
install-test: $(VENV)/.installed-test

run: install
	$(VENV)/bin/cxr-viewer $(ARGS)

test: install-test
	QT_QPA_PLATFORM=offscreen $(PY) -m pytest $(PYTEST_ARGS)

test-fast: install-test
	QT_QPA_PLATFORM=offscreen $(PY) -m pytest -m "not slow" $(PYTEST_ARGS)

# Benchmarks (issue 6): a table of medians and ratios; bench-quick is the short CI run (reports only).
bench: install-test
	QT_QPA_PLATFORM=offscreen $(PY) -m benchmarks $(BENCH_ARGS)

bench-quick: install-test
	QT_QPA_PLATFORM=offscreen $(PY) -m benchmarks --quick $(BENCH_ARGS)

# The bundled demo model (resources/models/): trains CRAL and its no-attention baseline (2 seeds each) on the 1,275 real
# NIH images in ../shared/data (about an hour on 2 cores), deterministic on CPU. See resources/models/MODEL_CARD.md.
SHARED_DATA ?= ../shared/data
DEMO_RUNS ?= runs/demo-model
demo-model: install
	$(PY) -m cral_model.cli.demo_model --shared-data $(SHARED_DATA) --runs $(DEMO_RUNS) $(DEMO_ARGS)

# The methods table of docs/METHODS.md (issue 15): CRAL, its no-attention baseline, AG-CNN, CAN and iterative
# attention mining under the demo model's config and budget, 2 seeds each (many hours on 2 CPU cores).
METHODS_RUNS ?= runs/methods-table
methods-table: install
	$(PY) -m cral_model.cli.methods_table --shared-data $(SHARED_DATA) --runs $(METHODS_RUNS) $(METHODS_ARGS)

# Desktop app (issue 8): one-folder PyInstaller build in dist/cxr-viewer (see docs/PACKAGING.md).
package:
	packaging/build.sh $(PACKAGE_ARGS)

package-cpu:
	packaging/build.sh --cpu-only $(PACKAGE_ARGS)

# Static checks (issue 17): import contracts, types (mypy, strict on cral_model and cxr_viewer.core) and
# ruff, all configured in pyproject.toml. All three run; the target fails if any of them failed.
lint: install-test
	@status=0; \
	echo "== lint-imports"; $(VENV)/bin/lint-imports || status=1; \
	echo "== mypy"; $(VENV)/bin/mypy || status=1; \
	echo "== ruff check"; $(VENV)/bin/ruff check . || status=1; \
	exit $$status

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache
