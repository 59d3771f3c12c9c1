# The two commands of the README's quick start:
#   make demo   set up .venv and run the main job on the embedded default model
#   make test   set up .venv and run the tests
VENV := .venv
BIN := $(VENV)/bin

.PHONY: setup demo test docs

setup: $(VENV)/.ready

$(VENV)/.ready: pyproject.toml scripts/setup.sh
	bash scripts/setup.sh
	touch $@

demo: setup
	bash scripts/demo.sh

test: setup
	$(BIN)/python -m pytest -q

docs: setup
	$(BIN)/python -m onthejob.docs
