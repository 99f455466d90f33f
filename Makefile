# Two commands for a fresh machine: `make demo` and `make test`.
# Each creates the virtual environment and installs imgclf first if needed.
PYTHON ?= python3
VENV ?= .venv
STAMP := $(VENV)/.installed-stamp

.PHONY: demo test install clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/imgclf demo

test: $(STAMP)
	sh scripts/ensure-system-deps.sh
	$(VENV)/bin/python -m pytest -q

clean:
	rm -rf $(VENV) runs imgclf-data .pytest_cache
