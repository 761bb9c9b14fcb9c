# Two commands set everything up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.ldmind-installed

.PHONY: test demo cpp clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# CPU build of torch from the pinned wheel (an unpinned torch pulls a multi-GB CUDA build)
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[ref,export,dev,plot,serve,openvino,ray]'
	touch $(STAMP)

# the C++ library, CLI and test driver (runtime/cpp/README.md): runtime/cpp/build/rel
cpp: $(STAMP)
	PYTHON=$(PY) bash runtime/cpp/build.sh rel

test: $(STAMP) cpp
	$(PY) -m pytest -q tests

demo: $(STAMP)
	$(PY) -m runtime.programs.demo

clean:
	rm -rf $(VENV) demo_out .pytest_cache runtime/cpp/build
