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

# Two pytest-xdist workers, one test file at a time each (--dist loadfile keeps a file's module fixtures, such as
# a trained run or a Ray instance, in one process). Run serially, the suite keeps about one core busy on average
# (TensorFlow's graph tracing is single-threaded Python), so on CI's two cores a second worker nearly halves it.
TEST_WORKERS ?= 2

test: $(STAMP)
	sh scripts/ensure-system-deps.sh
	IMGCLF_TEST_FULL_ZOO=1 $(VENV)/bin/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile  # every zoo model, the largest included

# The documentation site, offline, into site/ (open site/index.html); a broken link or reference fails it.
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict

clean:
	rm -rf $(VENV) runs imgclf-data .pytest_cache site .cache
