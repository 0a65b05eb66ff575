# make build : set up everything on a fresh Debian 12 machine, then build dist/ (playbooks/build.yml)
# make test  : set up everything, lint, then run the whole test suite
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
ANSIBLE_ARGS ?=
PYTEST_ARGS ?=

.PHONY: build test lint sanity changelog unit deps deps-dev bench galaxy boot-test clean distclean

build: deps
	$(BIN)/ansible-playbook playbooks/build.yml $(ANSIBLE_ARGS)

test: deps-dev lint
	$(BIN)/pytest $(PYTEST_ARGS)

# System packages come from bindep.txt (profile build for `make build`, build and test for `make test`).
deps: $(VENV)/.runtime-installed
	./scripts/ensure-packages.sh $(BIN)/bindep build

deps-dev: $(VENV)/.dev-installed
	./scripts/ensure-packages.sh $(BIN)/bindep build test

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# requirements*.txt give the supported ranges; constraints.txt pins the versions installed and tested here.
$(VENV)/.runtime-installed: requirements.txt constraints.txt | $(VENV)/bin/python
	$(BIN)/pip install -q -c constraints.txt -r requirements.txt bindep
	touch $@

$(VENV)/.dev-installed: requirements.txt requirements-dev.txt constraints.txt | $(VENV)/bin/python
	$(BIN)/pip install -q -c constraints.txt -r requirements-dev.txt
	touch $@ $(VENV)/.runtime-installed

lint: deps-dev
	$(BIN)/ruff check plugins tests bench scripts examples
	MYPYPATH=.collections $(BIN)/mypy --strict scripts/start_qemu.py scripts/check_defaults.py scripts/check_requirements.py
	$(BIN)/python scripts/check_defaults.py --quiet
	$(BIN)/python scripts/check_requirements.py
	MYPYPATH=.collections:. $(BIN)/mypy --strict --follow-imports=silent scripts/repro.py scripts/demo.py scripts/molecule.py examples/netboot_runner.py
	MYPYPATH=.collections $(BIN)/mypy
	PATH=$(abspath $(BIN)):$$PATH $(BIN)/ansible-lint --profile production
	$(BIN)/antsibull-changelog lint
	$(ANTSIBULL_ENV) $(BIN)/antsibull-docs lint-collection-docs --plugin-docs $(COLLECTION_ROOT)
	$(MAKE) sanity
	$(MAKE) galaxy
	$(MAKE) ee

# ansible-test sanity from the ansible_collections/homelab/alpine_netboot path the repo links (it needs that layout;
# ANSIBLE_TEST_CONTENT_ROOT keeps the symlinked path, which getcwd() would resolve away). Its per-test venvs and
# caches live in a private HOME under build/; pip is bootstrapped from ensurepip + PyPI (tests/sanity/get_pip.py)
# instead of ci-files.testing.ansible.com. SANITY_ARGS='--test validate-modules' runs one test.
COLLECTION_ROOT := .collections/ansible_collections/homelab/alpine_netboot
ANSIBLE_TEST_HOME := $(CURDIR)/build/ansible-test-home
# Every test runs; the few justified exceptions are tests/sanity/ignore-2.19.txt, explained in tests/sanity/README.md.
SANITY_ARGS ?=
sanity: deps-dev
	pipv=$$($(BIN)/python -c "import ansible_test, pathlib, re; print(re.search(r\"pip='([0-9.]+)'\", (pathlib.Path(ansible_test.__file__).parent / '_internal/python_requirements.py').read_text()).group(1))") && \
	  mkdir -p $(ANSIBLE_TEST_HOME)/.ansible/test/cache && \
	  cp tests/sanity/get_pip.py $(ANSIBLE_TEST_HOME)/.ansible/test/cache/get_pip_$${pipv//./_}.py
	cd $(COLLECTION_ROOT) && HOME=$(ANSIBLE_TEST_HOME) ANSIBLE_TEST_CONTENT_ROOT=$(CURDIR)/$(COLLECTION_ROOT) \
	  $(abspath $(BIN))/ansible-test sanity --python 3.11 --color no $(SANITY_ARGS)

# Fold changelogs/fragments/ into changelogs/changelog.yaml and regenerate CHANGELOG.md (release time only).
changelog: deps-dev
	$(BIN)/antsibull-changelog release

galaxy: deps
	rm -rf build/galaxy && mkdir -p build/galaxy
	$(BIN)/ansible-galaxy collection build --output-path build/galaxy --force .
	$(BIN)/ansible-galaxy collection install -p build/galaxy/installed --force build/galaxy/homelab-alpine_netboot-*.tar.gz
	cp build/galaxy/homelab-alpine_netboot-*.tar.gz build/galaxy/homelab-alpine_netboot.tar.gz

# The execution environment's build context (execution-environment.yml) in build/ee; `podman build build/ee` makes it.
.PHONY: ee
ee: galaxy deps-dev
	rm -rf build/ee
	$(BIN)/ansible-builder create -f execution-environment.yml -c build/ee --output-filename Containerfile -v 1

boot-test: deps
	$(BIN)/ansible-playbook playbooks/boot_test.yml $(ANSIBLE_ARGS)

bench: deps-dev
	$(BIN)/python -m bench

# The original README's compression table on your own image tree (default build/image; TREE=dir to choose).
.PHONY: compression-table
compression-table: deps
	$(BIN)/python -m bench.compression_table $(TREE)

# Two offline builds of the same inputs under another umask/TZ/locale/file order/mtimes/build dir: bit-identical
# dist/ or a report naming the artefact and the cpio entries that differ (scripts/repro.py; needs root, as build).
.PHONY: repro demo
repro: deps-dev
	NETBOOT_TEST_MATERIAL=$${NETBOOT_TEST_MATERIAL:-$(CURDIR)/tests/.material} $(BIN)/python scripts/repro.py $(REPRO_ARGS)

# Build the image from a local signed mirror made from the test material and boot it in qemu (README "make demo").
demo: deps-dev
	NETBOOT_TEST_MATERIAL=$${NETBOOT_TEST_MATERIAL:-$(CURDIR)/tests/.material} $(BIN)/python scripts/demo.py

# The collection's docsite (every module and role, the guides of docs/docsite) in $(DOCSITE)/build/html, built
# offline and strict: links into Ansible's own docs resolve through a local inventory (docs/ansible_inventory.py).
ANTSIBULL_ENV := PATH=$(abspath $(BIN)):$$PATH ANSIBLE_COLLECTIONS_PATH=$(CURDIR)/.collections
DOCSITE ?= build/docsite
.PHONY: docs
docs: deps-dev
	rm -rf $(DOCSITE) && install -d -m 755 $(DOCSITE)
	$(ANTSIBULL_ENV) $(BIN)/antsibull-docs sphinx-init --use-current --squash-hierarchy --fail-on-error \
	  --dest-dir $(DOCSITE) homelab.alpine_netboot
	$(BIN)/python docs/ansible_inventory.py $(DOCSITE)
	cd $(DOCSITE) && $(ANTSIBULL_ENV) ./build.sh

# One molecule scenario (extensions/molecule/<role>) with the test material and variables it needs (scripts/molecule.py;
# as root). MOLECULE_COMMAND=converge (or verify, ...) runs one step instead of the whole test sequence.
.PHONY: molecule
SCENARIO ?=
MOLECULE_COMMAND ?= test
molecule: deps-dev
	NETBOOT_TEST_MATERIAL=$${NETBOOT_TEST_MATERIAL:-$(CURDIR)/tests/.material} $(BIN)/python scripts/molecule.py $(SCENARIO) $(MOLECULE_COMMAND)

clean:
	rm -rf build dist

distclean: clean
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
