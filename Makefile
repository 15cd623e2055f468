# Two commands for a newcomer: `make demo` and `make test`. Both set up .venv on first use.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# `make demo` installs what the agents need; the test tools (Chromium, Node.js, iproute2, pytest, Playwright…)
# come with `make test` (or `make install`).
RUN_STAMP := $(VENV)/.installed-run
STAMP := $(VENV)/.installed

.PHONY: install demo test bench faults soak lint clean

install: $(STAMP)

$(RUN_STAMP): pyproject.toml scripts/ensure-system-packages.sh
	bash scripts/ensure-system-packages.sh run
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e .
	touch $(RUN_STAMP)

$(STAMP): $(RUN_STAMP)
	bash scripts/ensure-system-packages.sh test
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(RUN_STAMP)
	$(PY) -m agents.demo

# The suite mostly waits on devnets, agents and browsers: test files run in parallel workers (a file's
# tests stay in one worker, so module fixtures such as a devnet are shared as before). TEST_JOBS=1: serial.
TEST_JOBS ?= 3
test: $(STAMP)
	$(PY) -m pytest -q -n $(TEST_JOBS) --dist loadfile --no-loadscope-reorder --durations=30

bench: $(STAMP)
	$(PY) bench/devnet_throughput.py
	$(PY) bench/submit_pipeline.py
	$(PY) bench/farm.py
	$(PY) bench/detector_quality.py
	$(PY) bench/slow_clients.py
	$(PY) bench/federated.py

# Fault injection (not in make test): 50 seeded runs of a small farm under crashes, cut connections, a full
# disk and a bad storage server, each checked for lost or doubled work and payments; half of them run the
# annotators in one engine, killed while it dispatches, uploads and claims a pay, and cut while it catches up.
# RUNS=6 for a quick check (3 engine runs).
faults: $(STAMP)
	$(PY) bench/faults.py --runs $(or $(RUNS),50)

# Soak (not in make test): one engine with 10 workers, 1,000 tasks, about 10 minutes; RSS, descriptors and
# chain lag sampled, every warning counted. (bench/soak.py --agents 10: the annotators one process each.)
soak: $(STAMP)
	$(PY) bench/soak.py --engine 10

lint: $(STAMP)
	$(PY) -m ruff check .
	$(VENV)/bin/lint-imports
	$(PY) -m mypy

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache
