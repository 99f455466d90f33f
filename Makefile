# Two commands for a fresh machine: `make demo` and `make test`.
# Each creates the virtual environment and installs imgclf first if needed.
PYTHON ?= python3
VENV ?= .venv
STAMP := $(VENV)/.installed-stamp

.PHONY: demo test docs install clean

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
	IMGCLF_TEST_FULL_ZOO=1 $(VENV)/bin/python -m pytest -q  # every zoo model, the largest included (~1 min)

# The documentation site, offline, into site/ (open site/index.html); a broken link or reference fails it.
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict

clean:
	rm -rf $(VENV) runs imgclf-data .pytest_cache site .cache
