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

test: prereqs-test setup
	$(BIN)/ruff check tools tests
	$(BIN)/lint-imports
	$(BIN)/pytest

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
