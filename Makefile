# The two commands of the README:
#   make run    - the main job (tools/merge_and_export) on its embedded default (fashion2 example)
#   make test   - the whole test suite
# Both create the virtual environment on first use and reuse it afterwards.
PYTHON ?= python3
VENV   ?= .venv
STAMP  := $(VENV)/.installed
ARGS   ?=
PYTEST_ARGS ?=

.PHONY: run test venv clean-venv

venv: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	@test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install -q --disable-pip-version-check --upgrade pip
	$(VENV)/bin/python -m pip install -q --disable-pip-version-check -r requirements.txt
	$(VENV)/bin/python -m pip install -q --disable-pip-version-check -e . --no-deps
	@touch $(STAMP)

run: $(STAMP)
	$(VENV)/bin/python -m tools.merge_and_export $(ARGS)

test: $(STAMP)
	$(VENV)/bin/python -m pytest -q tests $(PYTEST_ARGS)

clean-venv:
	rm -rf $(VENV)
