# gr-gensemcom: every target does its own idempotent set-up on a fresh Debian bookworm machine.
#
#   make demo    set up, then run the main job: the bundled photo through every offline system
#                (embedded profiles), each in a real GNU Radio flowgraph, offline, on CPU: a grid,
#                a quality-vs-SNR figure and an HTML report in out/demo/ (gensemcom compare)
#   make test    set up, install the module, run the whole test suite
#   make bench   set up, run the benchmarks (PHY curves, throughputs, decoder fuzzing) into results/
#   make install build and install the GNU Radio module under PREFIX (default /usr/local)
#
# Variables: PREFIX (install prefix), PYTHON (the interpreter the venv is made from),
# VENV (where the venv lives), PYTEST_ARGS (extra pytest arguments).

PREFIX      ?= /usr/local
PYTHON      ?= /usr/bin/python3
VENV        ?= .venv
BUILD       ?= build
PYTEST_ARGS ?=

# gir1.2-gtk-3.0: GNU Radio Companion's GTK (Debian's gnuradio does not pull it); xvfb, xauth: GRC started headless in tests
APT_PACKAGES := gnuradio gnuradio-dev cmake g++ python3-venv python3-dev python3-msgpack python3-tqdm \
                gir1.2-gtk-3.0 xvfb xauth
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
VPY  := $(VENV)/bin/python
PIP  := $(VPY) -m pip --disable-pip-version-check -q
STAMP := $(BUILD)/.stamps

.PHONY: all deps venv build install test demo bench clean help

all: build

help:
	@sed -n '1,12p' Makefile

$(STAMP):
	@mkdir -p $(STAMP)

# Debian packages: installed only when one is missing.
deps: | $(STAMP)
	@missing=""; for p in $(APT_PACKAGES); do \
	  dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "apt-get install:$$missing"; \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing >/dev/null; \
	fi

# The venv sees Debian's GNU Radio (--system-site-packages); numpy<2 is pinned by a
# constraints file because GNU Radio 3.10.5 breaks on numpy 2.
$(STAMP)/venv: pyproject.toml constraints.txt | deps $(STAMP)
	@[ -x $(VPY) ] || $(PYTHON) -m venv --system-site-packages $(VENV)
	$(PIP) install -c constraints.txt setuptools wheel
	$(PIP) install -c constraints.txt "torch==2.13.0"
	$(PIP) install -c constraints.txt --no-build-isolation "pyldpc>=0.7.9"
	$(PIP) install -c constraints.txt --no-build-isolation -e ".[test,ray]"
	@touch $@

venv: deps $(STAMP)/venv

$(BUILD)/CMakeCache.txt: CMakeLists.txt cmake/gensemcom_install.py.in | deps $(STAMP)
	cmake -S . -B $(BUILD) -DCMAKE_INSTALL_PREFIX=$(PREFIX) -DGENSEMCOM_WORKER_PYTHON=$(abspath $(VPY)) >/dev/null

build: venv $(BUILD)/CMakeCache.txt
	cmake --build $(BUILD) >/dev/null

install: build
	$(SUDO) cmake --install $(BUILD) >/dev/null
	@echo "installed gnuradio.gensemcom and GRC blocks under $(PREFIX)"

test: install
	$(VPY) -m pytest $(PYTEST_ARGS)

DEMO_OUT ?= out/demo
demo: install
	$(VENV)/bin/gensemcom compare --image examples/data/astronaut.jpg --snr 10 --out $(DEMO_OUT)
	@echo "grid.png, quality_vs_snr.png, report.html (open it in a browser), report.json and received/ in $(DEMO_OUT)/"

BENCH := results/bench
bench: venv
	@mkdir -p $(BENCH)
	$(VENV)/bin/gensemcom phy-ber -m 4,16,64,256 --snrs 0:30:1 --min-errors 10000 --max-bits 2e8 \
	  --json --plot $(BENCH)/ber_uncoded_awgn.png > $(BENCH)/ber_uncoded_awgn.json
	$(VPY) bench/ldpc_bench.py --json $(BENCH)/ldpc.json
	$(VPY) bench/mcs_table.py --out $(BENCH)/mcs_bler.json --plot $(BENCH)/mcs_bler.png
	$(VPY) bench/link_adaptation.py --json $(BENCH)/link_adaptation.json
	$(VPY) bench/worker_bench.py --out $(BENCH)/worker.json
	$(VPY) bench/fuzz_bench.py --n 100000 --hostile --quiet --json $(BENCH)/fuzz.json
	$(VPY) bench/sc_sic_full.py --sizes 512 --steps 1 --json $(BENCH)/sc_sic_full.json
	@echo "results in $(BENCH)/"

clean:
	rm -rf $(BUILD)
