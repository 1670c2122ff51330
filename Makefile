# Makefile of "Compressing Deep Networks".
#   make book   build the HTML book (installs the environment first)
#   make test   everything CI checks: lint, unit tests, notebooks, strict build, browser check
# `make help` lists every target.

SHELL := /bin/bash
.DEFAULT_GOAL := help
.NOTPARALLEL:

PYTHON ?= python3
VENV   := .venv
BIN    := $(CURDIR)/$(VENV)/bin
PY     := $(BIN)/python
STAMP  := $(VENV)/.installed-stamp
# Exact versions and hashes of everything `make venv` installs; `make lock` regenerates it.
LOCK   := requirements.lock
UV_VERSION := 0.13.9
# Tools started by the tools (jupyter kernels, nbconvert) must come from the project's venv too.
export PATH := $(BIN):$(PATH)
# BLAS threads per process (default 1: on 2 cores shared with pytest-xdist workers one thread per
# process is the fastest). Another thread count sums in another order, the nearest stand-in for
# another CPU that one machine has: `make nbval BLAS_THREADS=2` must pass as well as the default.
# The thread count comes from here only; no notebook sets it.
BLAS_THREADS ?= 1
export OPENBLAS_NUM_THREADS := $(BLAS_THREADS)
export OMP_NUM_THREADS := $(BLAS_THREADS)
export MKL_NUM_THREADS := $(BLAS_THREADS)

FASHION_DIR  := /usr/share/datasets/fashion-mnist
NOTEBOOKS     = $(shell find chapters exercises labs -name '*.ipynb' -not -path '*/.ipynb_checkpoints/*' 2>/dev/null | sort)
LINT_PATHS    = $(wildcard refimpl tests benchmarks tools)
# `make bench`: the speed benchmarks (ratios against a reference in the same run). The scripts
# that write the chapters' stored results (*_seeds.py, bench_hybrid_goal.py) and the seed-spread
# tool run on their own; see their docstrings.
BENCHMARKS    = $(filter-out %_seeds.py %_goal.py,$(wildcard benchmarks/bench_*.py))
BOOK_ROOT    := $(shell sed -n 's/^root: *//p' _toc.yml)
# pytest-xdist workers; with more than one BLAS thread, one worker keeps to the 2 cores.
WORKERS      ?= $(if $(filter 1,$(BLAS_THREADS)),2,1)

# Run pytest with the given arguments; exit code 5 ("no tests collected") counts as success.
define pytest
	@set +e; $(PY) -m pytest $(1); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests here (exit 5): nothing to check, OK"; rc=0; fi; \
	exit $$rc
endef

# Install Debian package $(2) unless command/path test $(1) succeeds; never fails.
define apt_ensure
	@if $(1); then \
	  echo "$(3): already available"; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  echo "$(3): installing Debian package $(2)"; \
	  (export DEBIAN_FRONTEND=noninteractive; apt-get update -qq && apt-get install -y -qq $(2)) \
	    || echo "WARNING: could not install $(2); $(3) will be missing"; \
	else \
	  echo "NOTE: $(3) is missing. Install it with: sudo apt-get install $(2)"; \
	fi
endef

.PHONY: help venv lock data browser torch lint unit nbval book book-strict book-test test bench benchmark execute clean distclean \
        student grade book-student

help:
	@echo "make venv         create $(VENV): the locked versions of $(LOCK), then the package"
	@echo "make lock         regenerate $(LOCK) from pyproject.toml (newest versions, with hashes)"
	@echo "make data         make sure Fashion-MNIST is in $(FASHION_DIR) (Debian package)"
	@echo "make browser      make sure headless chromium is installed (Debian package)"
	@echo "make torch        install torch (CPU) from a local wheel, for the parity tests"
	@echo "make lint         ruff check $(LINT_PATHS)"
	@echo "make unit         unit tests (pytest tests, without the browser test)"
	@echo "make nbval        re-execute the notebooks, compare with stored outputs (numbers within"
	@echo "                  tolerance); NOTEBOOKS=path for one, BLAS_THREADS=2 for another sum order"
	@echo "make book         build the HTML book"
	@echo "make book-strict  build the book from scratch, every warning an error"
	@echo "make book-test    open the built book in headless chromium and check it"
	@echo "make test         venv data browser lint unit nbval book-strict book-test"
	@echo "make bench        run the benchmarks (benchmarks/*.py)"
	@echo "make benchmark    the equal-budget benchmark of chapter 9 (every method, about 20 min)"
	@echo "make execute      re-execute every notebook in place (run before committing one)"
	@echo "make student      the student edition of exercises/ and labs/ under _build/student/"
	@echo "make grade NB=path  run one (completed student) notebook, print each check and N/M points"
	@echo "make book-student the HTML book without solutions, under _build/student/book/_build/html"
	@echo "make clean        remove build and cache files (make distclean: also $(VENV))"

# --- environment -----------------------------------------------------------------------------
venv: $(STAMP)

$(STAMP): pyproject.toml $(LOCK)
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
	  { echo "Python 3.11 or newer is needed (PYTHON=$(PYTHON)); try: make venv PYTHON=python3.12"; exit 1; }
	$(PY) -m pip install --disable-pip-version-check -q --require-hashes --no-deps -r $(LOCK)
	$(PY) -m pip install --disable-pip-version-check -q --no-deps --no-build-isolation -e .
	@touch $@

# The lock is universal (any OS, Python >= 3.11) with one version of each package, so the figures
# stored in the notebooks are promised wherever it is installed. Without the lock,
# `pip install -e ".[book,test]"` gives the newest versions, and trained figures may then move.
lock:
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --disable-pip-version-check -q "uv==$(UV_VERSION)"
	printf 'setuptools>=77\n' | $(BIN)/uv pip compile pyproject.toml - --extra book --extra test \
	  --universal --python-version 3.11 --fork-strategy fewest --generate-hashes \
	  --custom-compile-command "make lock" -o $(LOCK)

data:
	$(call apt_ensure,[ -d $(FASHION_DIR) ],dataset-fashion-mnist,Fashion-MNIST ($(FASHION_DIR)))

browser:
	$(call apt_ensure,command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1,chromium,headless chromium)

# The torch parity tests (tests/nn/test_torch_parity.py) need torch. Install its CPU build only
# from a wheel that lies on this machine's disk (never a multi-GB download); else they skip.
TORCH_WHEEL := $(firstword $(wildcard /opt/wheels/torch-*+cpu-*.whl))
torch: venv
	@if $(PY) -c "import torch" >/dev/null 2>&1; then \
	  echo "torch: installed, the parity tests run"; \
	elif [ -n "$(TORCH_WHEEL)" ]; then \
	  echo "torch: installing $(TORCH_WHEEL) for the parity tests"; \
	  $(PY) -m pip install -q "$(TORCH_WHEEL)" || echo "WARNING: torch not installed; parity tests skip"; \
	else \
	  echo "torch: no local CPU wheel; the torch parity tests will be skipped"; \
	fi

# --- checks ----------------------------------------------------------------------------------
lint: venv
	$(BIN)/ruff check $(LINT_PATHS)

unit: venv
	$(call pytest,tests -n $(WORKERS) --ignore=tests/test_book.py)

nbval: venv
	@if [ -z "$(strip $(NOTEBOOKS))" ]; then \
	  echo "nbval: no notebook under chapters/, exercises/ or labs/ yet, nothing to re-execute"; \
	else \
	  $(MAKE) --no-print-directory _nbval; \
	fi

_nbval:
	$(call pytest,--nbval --nbval-current-env --nbval-sanitize-with tests/nbval_sanitize.cfg -p tests.nbval_tolerance -p no:randomly -n $(WORKERS) --dist loadfile $(NOTEBOOKS))

book: venv
	$(BIN)/jupyter-book build .
	@echo ""
	@echo "Open the book at: file://$(CURDIR)/_build/html/$(BOOK_ROOT).html"

book-strict: venv
	$(BIN)/jupyter-book build . -W -n --keep-going --all

# Skips unless _build/html and chromium exist; with REFIMPL_REQUIRE_BROWSER=1 (as in
# `make test`) their absence is a failure instead.
book-test: venv
	$(call pytest,tests/test_book.py -p no:randomly)

test:
	$(MAKE) venv
	$(MAKE) data
	$(MAKE) browser
	$(MAKE) torch
	$(MAKE) lint
	$(MAKE) unit
	$(MAKE) nbval
	$(MAKE) book-strict
	REFIMPL_REQUIRE_BROWSER=1 $(MAKE) book-test

# --- teaching (tools/course.py; nbgrader's cell metadata and solution markers) -----------------
# The student edition: solutions replaced by nbgrader's stubs, check cells kept, outputs cleared.
student: venv
	$(PY) tools/course.py student --out _build/student

# Runs NB in a fresh kernel; prints each check's points and `N/M points`; fails unless all pass.
grade: venv
	@if [ -z "$(NB)" ]; then echo "usage: make grade NB=path/to/notebook.ipynb"; exit 2; fi
	$(PY) tools/course.py grade "$(NB)"

# The HTML book with the student notebooks in place of the exercises and labs.
book-student: venv
	$(PY) tools/course.py book-src _build/student/book
	$(BIN)/jupyter-book build _build/student/book -W -n --keep-going --all
	@echo ""
	@echo "Open the student edition at: file://$(CURDIR)/_build/student/book/_build/html/$(BOOK_ROOT).html"

# --- other -----------------------------------------------------------------------------------
bench: venv
	@if [ -z "$(BENCHMARKS)" ]; then echo "bench: no benchmarks/*.py yet"; fi
	@set -e; for f in $(BENCHMARKS); do echo "== $$f"; $(PY) $$f; done

# The equal-budget benchmark of chapter 9 (python -m refimpl.benchmark): every method, whole
# curves, several seeds, on one BLAS thread; about 20 minutes on a shared 2-core machine.
BENCH_OUT := benchmarks/results
benchmark: venv
	OPENBLAS_NUM_THREADS=1 nice -n 10 $(PY) -m refimpl.benchmark --model lenet_300_100 --seeds 3 \
	  --targets 4,8,16,32 --repeats 3 --out $(BENCH_OUT)/benchmark_lenet_300_100.json
	OPENBLAS_NUM_THREADS=1 nice -n 10 $(PY) -m refimpl.benchmark --retime \
	  $(BENCH_OUT)/benchmark_lenet_300_100.json --repeats 7
	OPENBLAS_NUM_THREADS=1 nice -n 10 $(PY) -m refimpl.benchmark --model lenet5 --seeds 2 \
	  --targets 4,16 --repeats 3 --out $(BENCH_OUT)/benchmark_lenet5.json

execute: venv
	@if [ -z "$(strip $(NOTEBOOKS))" ]; then echo "execute: no notebook yet"; else \
	  $(BIN)/jupyter nbconvert --to notebook --execute --inplace \
	    --ExecutePreprocessor.kernel_name=python3 \
	    --ExecutePreprocessor.timeout=1800 \
	    --ExecutePreprocessor.record_timing=False \
	    $(NOTEBOOKS); fi

clean:
	rm -rf _build .pytest_cache .ruff_cache .hypothesis *.egg-info
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV)
