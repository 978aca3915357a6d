# kiosk-agent: the two commands a newcomer needs are `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

PREFIX ?= /opt/kiosk-agent
CONFIG ?= /etc/kiosk/kiosk.toml

.PHONY: setup system-deps demo test bench lint install clean

setup: $(STAMP) system-deps

$(STAMP): setup.cfg pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev,ui,desk]'
	touch $(STAMP)

system-deps:
	./scripts/system-deps.sh

demo: setup
	$(PY) -m kiosk demo

test: setup
	$(PY) -m pytest

bench: setup
	$(PY) -m bench

lint: setup
	$(VENV)/bin/ruff check .

install:
	./scripts/install.sh $(PREFIX) $(CONFIG)

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache var demo-run


# Reliability (issue 9, docs/reliability.md): the long chaos run (>= 1,000 payments with
# SIGKILLs and broker restarts, ~12 min) and the fleet simulation (5,000+ terminals).
.PHONY: chaos fleet

chaos: setup
	$(PY) -m tests.chaos chaos

fleet: setup
	$(PY) -m bench --only fleet
