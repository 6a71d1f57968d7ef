# Quick start: `make demo` and `make test`. Both create/refresh .venv from pyproject.toml.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo test bench bench-filter bench-extract bench-dedup bench-runners bench-scale bench-scoring bench-packing bench-loader bench-superbpe bench-stats bench-fixed bench-corpora clean

$(STAMP): pyproject.toml transforms/filter/_ngrams.c transforms/stats/_words.c
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/tokenmill demo

# one pytest worker per core (tests that start services pick free ports); TEST_ARGS="-n 0 -x" for a serial run
TEST_ARGS ?= -n 2 --durations=15
test: $(STAMP)
	$(PY) -m pytest -q $(TEST_ARGS)

bench: $(STAMP)
	$(PY) benchmarks/prepare_throughput.py

bench-filter: $(STAMP)
	$(PY) benchmarks/filter_throughput.py

bench-extract: $(STAMP)
	$(PY) benchmarks/extract_throughput.py

bench-dedup: $(STAMP)
	$(PY) benchmarks/dedup_memory.py

bench-runners: $(STAMP)
	$(PY) benchmarks/runners.py

bench-scale: $(STAMP)
	$(PY) benchmarks/scale.py

bench-scoring: $(STAMP)
	$(PY) benchmarks/scoring_overhead.py

bench-packing: $(STAMP)
	$(PY) benchmarks/packing.py

bench-loader: $(STAMP)
	$(PY) benchmarks/loader_throughput.py

bench-superbpe: $(STAMP)
	$(PY) benchmarks/superbpe.py

bench-stats: $(STAMP)
	$(PY) benchmarks/stats_throughput.py

bench-fixed: $(STAMP)
	$(PY) benchmarks/fixed_cost.py

# the real benchmark corpora (multilingual, code, mix) from Debian packages, built once into .bench-cache/corpora;
# every bench-* target runs on them by default and builds the ones it needs on first use
bench-corpora: $(STAMP)
	$(PY) benchmarks/corpora.py

clean:
	rm -rf $(VENV) demo-output build *.egg-info
