# Every target installs what it needs first, so each works on a fresh clone.
VENV      ?= .venv
PYTHON    ?= python3
BIN       := $(VENV)/bin
STAMP     := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)
STORAGE   := components/modelmesh/storage/storage-config.env
PROFILES  := $(wildcard argocd/bootstrap/*) $(wildcard overlays/*)

.PHONY: setup test validate plan bench demo lint clean

setup: $(STAMP) $(STORAGE)

$(STAMP): pyproject.toml
	@echo "setup: the package and its extras into $(VENV) (about 2 min the first time, seconds after)"
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[conformance,lab,dev]"
	@touch $@

# The real file is git-ignored; the example holds placeholders only.
$(STORAGE):
	cp $@.example $@
	@echo "created $@ from the example: put your S3 credentials there before applying it"

# What the tests and the demo need that pip cannot give, checked (and the missing Debian packages installed) before
# anything is built; tools/mmgitops/lab/prereqs.py holds the list, for the commands and .ci/run too.
PREREQS = PYTHONPATH=tools $(PYTHON) -m mmgitops.lab.prereqs

prereqs-%:
	@$(PREREQS) $* --install

# The binaries the cluster and reference tiers use are built first, once and cached, so that no check runs beside a
# compile; those tiers need root (network namespaces) and are skipped without it, so nothing is built then.
# The tiers run in two lanes side by side (tests/conftest.py: LANES): 27 min instead of 38 here. LANES=1 runs them one
# after another.
LANES ?= 2
test: prereqs-test setup
	$(BIN)/ruff check tools tests
	$(BIN)/lint-imports
	@if [ "$$(id -u)" = 0 ]; then $(BIN)/mmgitops local build all; \
	 else echo "not root: the cluster and reference tiers will be skipped, so nothing is built"; fi
	$(BIN)/pytest $(if $(filter-out 1,$(LANES)),-n $(LANES)) --durations=25

validate: setup
	$(BIN)/mmgitops validate

plan: setup
	@for p in $(PROFILES); do $(BIN)/mmgitops plan $$p || exit 1; done

# Local cluster, the conformance profile, the suite in cluster mode, the report (README: "Try it").
demo: prereqs-demo setup
	$(BIN)/mmgitops demo

bench: setup
	$(BIN)/mmgitops bench validate

lint: setup
	$(BIN)/ruff check tools tests
	$(BIN)/lint-imports

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .import_linter_cache reports
