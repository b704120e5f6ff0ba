# camloc: two entry points. `make demo` runs explain on the bundled sample photos with the offline
# default model; `make test` runs the test suite. Both create .venv and install what they need.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.installed
DEMO_OUT ?= demo-out

AXE := .cache/axe-core/node_modules/axe-core/axe.min.js

.PHONY: demo test test-fast lint venv bench clean axe

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/camloc explain src/camloc/assets/samples --out $(DEMO_OUT) --top-k 3 --overwrite
	@echo "Overlays and results.jsonl are in $(DEMO_OUT)/"

# The rules held by tools: ruff's lint and the import contracts (both configured in pyproject.toml).
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	PYTHONPATH=src $(VENV)/bin/lint-imports

# axe-core (npm) for the accessibility check of the browser tests; without npm those checks skip
# and say why.
$(AXE):
	@if command -v npm >/dev/null 2>&1; then \
		npm install --silent --no-audit --no-fund --prefix .cache/axe-core axe-core@4.14.1 \
		|| echo "warning: npm could not install axe-core; the accessibility checks will be skipped"; \
	else echo "warning: npm not found; the accessibility checks will be skipped"; fi

axe: $(AXE)

# The lint first; then two lanes: everything on two xdist workers, then the timing tests marked `serial` alone (their
# goals are ratios that another worker sharing the 2 cores would distort).
test: lint axe
	CAMLOC_AXE_JS=$(CURDIR)/$(AXE) $(PY) -m pytest -n 2 --dist loadfile -q --durations=15 -m "not serial"
	CAMLOC_AXE_JS=$(CURDIR)/$(AXE) $(PY) -m pytest -q -m serial --durations=5

# The fast lane: everything not marked slow, stopping at the first failure.
test-fast: lint
	$(PY) -m pytest -n 2 --dist loadfile -q -x -m "not slow" --durations=10

bench: $(STAMP)
	$(PY) benchmarks/bench_cam_overhead.py

clean:
	rm -rf $(VENV) $(DEMO_OUT) .pytest_cache
