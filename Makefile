# make build : set up everything on a fresh Debian 12 machine, then build dist/ (playbooks/build.yml)
# make test  : set up everything, lint, then run the whole test suite
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
ANSIBLE_ARGS ?=
PYTEST_ARGS ?=

.PHONY: build test lint unit deps deps-dev bench galaxy boot-test clean distclean

build: deps
	$(BIN)/ansible-playbook playbooks/build.yml $(ANSIBLE_ARGS)

test: deps-dev lint
	$(BIN)/pytest $(PYTEST_ARGS)

deps: $(VENV)/.runtime-installed
	./scripts/ensure-apt.sh requirements-apt.txt

deps-dev: $(VENV)/.dev-installed
	./scripts/ensure-apt.sh requirements-apt.txt requirements-apt-dev.txt

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.runtime-installed: requirements.txt | $(VENV)/bin/python
	$(BIN)/pip install -q -r requirements.txt
	touch $@

$(VENV)/.dev-installed: requirements.txt requirements-dev.txt | $(VENV)/bin/python
	$(BIN)/pip install -q -r requirements-dev.txt
	touch $@ $(VENV)/.runtime-installed

lint: deps-dev
	$(BIN)/ruff check plugins tests bench scripts
	MYPYPATH=.collections $(BIN)/mypy --strict scripts/start_qemu.py
	MYPYPATH=.collections $(BIN)/mypy
	PATH=$(abspath $(BIN)):$$PATH $(BIN)/ansible-lint --profile production
	$(MAKE) galaxy

galaxy: deps
	rm -rf build/galaxy && mkdir -p build/galaxy
	$(BIN)/ansible-galaxy collection build --output-path build/galaxy --force .
	$(BIN)/ansible-galaxy collection install -p build/galaxy/installed --force build/galaxy/homelab-alpine_netboot-*.tar.gz

boot-test: deps
	$(BIN)/ansible-playbook playbooks/boot_test.yml $(ANSIBLE_ARGS)

bench: deps-dev
	$(BIN)/python -m bench

clean:
	rm -rf build dist

distclean: clean
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
