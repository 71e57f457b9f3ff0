# Quick start: `make run` (install, embedded Redis, Ray Serve on the tiny models) and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export HF_HUB_OFFLINE := 1
export RAY_USAGE_STATS_ENABLED := 0

.PHONY: install browser run test soak bench floor clean
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch first and pinned: on these machines 2.13.0 is the local CPU wheel; a looser pin pulls CUDA wheels
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[server,test]"
	$(PY) -m pip install -q --no-deps invisible-watermark==0.2.0  # tests, bench: the watermark vs the library
	touch $(STAMP)

install: $(STAMP)

run: install
	$(VENV)/bin/montage up serve_config.yaml

# The web page's test drives Debian's Chromium headless (tests/composition/test_web.py)
browser:
	@command -v chromium >/dev/null || { $(SUDO) apt-get update -qq && \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

# tests/lifecycle first, alone (it needs no other Ray on the machine); then the rest over TEST_WORKERS pytest-xdist
# workers, each with its own ports, Redis and Ray (tests/lanes.py; they deselect tests/lifecycle). Both always run.
TEST_WORKERS ?= 2
test: install browser
	status=0; $(PY) -m pytest -q --durations=5 tests/lifecycle || status=$$?; \
	$(PY) -m pytest -q --durations=30 -n $(TEST_WORKERS) --dist loadgroup && exit $$status

# The reliability suite at length: 5 minutes of 64-client load and a longer fuzz (tests/reliability)
soak: install
	LOAD_SECONDS=300 FUZZ_EXAMPLES=60 $(PY) -m pytest -q -s tests/reliability

# CPU suite: its own Redis, Ray and Serve on :18500; table on stdout, figures in var/bench/cpu.json (BENCHMARKS.md)
bench: install
	$(PY) -m bench.suite

# The dependency floor (transformers 5.17, as on the lent GPU machines) under the model and benchmark tests
floor:
	test -x .venv-floor/bin/python || $(PYTHON) -m venv .venv-floor
	.venv-floor/bin/pip install -q torch==2.13.0 && .venv-floor/bin/pip install -q -e ".[server,test]" transformers==5.17.0 && .venv-floor/bin/pip install -q --no-deps invisible-watermark==0.2.0
	.venv-floor/bin/python -m pytest -q tests/models tests/bench

clean:
	rm -rf $(VENV) .venv-floor var .pytest_cache
