# Two commands for a fresh machine (see README):
#   make serve   -- install and run the node (embedded SQLite in ./hipnode-data)
#   make test    -- install everything the tests need (apt, pip, npm) and run the whole suite
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: serve test install install-test deps-system demo

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

install: $(PY)
	$(PY) -m pip install -q -e .

serve: install
	$(VENV)/bin/hipnode serve --storage ./hipnode-data

deps-system:
	./deploy/install-system-deps.sh

install-test: deps-system $(PY)
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[train,test]'
	./orthanc-test/install.sh

# pytest exits 5 when it collects no test: make fails on any non-zero status.
test: install-test
	$(PY) -m pytest

demo: install-test
	$(VENV)/bin/hipnode demo
