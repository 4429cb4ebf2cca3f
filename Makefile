# Two commands do all set-up on a fresh machine: `make demo` (the main job) and `make test` (the whole suite).
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: demo test lint bench clean system-deps

system-deps:
	scripts/system-deps

$(STAMP): pyproject.toml | system-deps
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/anycast-tcp lab demo

lint: $(STAMP)
	$(VENV)/bin/ruff check .

test: lint
	$(PY) -m pytest $(PYTEST_ARGS)

bench: $(STAMP)
	scripts/system-deps bench
	$(PY) -m pip install --quiet -e '.[bench]'
	$(PY) bench/bench_tun.py --json bench/results-tun.json
	$(PY) bench/bench_idle.py --json bench/results-idle.json
	$(PY) bench/plot_route_moves.py --out bench/results-route-moves.png
	$(PY) bench/bench_sim.py --json bench/results-sim.json

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis .ruff_cache
