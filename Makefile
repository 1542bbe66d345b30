# make run: set up .venv and analyse samples/; make test: set up and run the suite.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: setup run test compiled test-compiled pure bench golden fuzz clean

setup: $(VENV)/.installed

# an editable install, in pure Python (a compiled module in the tree would shadow
# edits of its .py): `make compiled` compiles them in place
$(VENV)/.installed: setup.cfg setup.py pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	PCAP_TLS_SPLIT_PURE=1 $(BIN)/python -m pip install -q -e '.[test]'
	$(BIN)/python -m compileall -q pcap_tls_split  # an editable install is not compiled
	touch $@

# exit status 1 only means "a high finding" (the samples have some)
run: setup
	$(BIN)/pcap-tls-split analyze --all samples/ || test $$? -eq 1

# the suite on the pure-Python modules (compiled ones in the tree are removed first)
test: setup pure
	PCAP_TLS_SPLIT_EXPECT=pure $(BIN)/python -m pytest -q -p no:cacheprovider

# the per-packet modules (those with a .pxd) compiled in place with Cython, from
# the same source; `make pure` removes them again
compiled: setup
	PCAP_TLS_SPLIT_COMPILE=1 $(BIN)/python setup.py -q build_ext --inplace

# the suite on the compiled modules, then the tree is pure again
test-compiled: compiled
	PCAP_TLS_SPLIT_EXPECT=compiled $(BIN)/python -m pytest -q -p no:cacheprovider; \
	status=$$?; $(MAKE) -s pure; exit $$status

pure:
	find pcap_tls_split \( -name "*.so" -o -name "*.pyd" -o -name "*.c" \) -delete; rm -rf build/cython

# the three capture shapes (made in /tmp if missing: root), then the state per open
# connection; e.g. make bench BENCH_RUNS=3 BENCH_ARGS="--shape fleet"
BENCH_RUNS ?= 5
BENCH_ARGS ?=
bench: setup pure      # (the pure rows run this tree: no compiled module in it)
	$(BIN)/python bench/run.py --runs $(BENCH_RUNS) $(BENCH_ARGS)
	$(BIN)/python bench/run.py --open-connections 20000 --runs $(BENCH_RUNS)

# a long fuzz campaign: make fuzz SEED=1 CASES=20000 (failing inputs go to fuzz-failures/)
SEED ?= 1
CASES ?= 20000
fuzz: setup
	$(BIN)/python tests/fuzz.py --seed $(SEED) --cases $(CASES)

# write tests/golden/ anew from the CLI's current output (then read the diff)
golden: setup
	$(BIN)/python tests/golden.py --update

clean: pure
	rm -rf $(VENV) build *.egg-info fuzz-failures
