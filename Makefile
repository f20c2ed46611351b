# The two entry points of the README. Both create the environment first (idempotent).
#   make repro   -> environment + `dvc repro` of the embedded default, end to end
#   make test    -> environment + the test suite (what .ci/run calls)
#   make test-fast -> the suite without the tests marked slow
#   make lock    -> rewrite requirements.lock from the current venv (after changing a pin)
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.seppo-installed
PIP_QUIET ?= -q

export DVC_NO_ANALYTICS := 1
export GX_ANALYTICS_ENABLED := false
export PREFECT_SERVER_ANALYTICS_ENABLED := false

.PHONY: setup repro repro-video test test-fast lock

setup: $(STAMP)

$(STAMP): requirements.txt requirements-nodeps.txt requirements.lock pyproject.toml
	$(PYTHON) -m venv $(VENV)
	# every version, transitive ones too, is fixed by the lock (used as constraints)
	$(BIN)/pip install $(PIP_QUIET) -c requirements.lock -r requirements.txt
	# hpsv2 / image-reward pin packages that cannot coexist with the rest: see docs/install.md
	$(BIN)/pip install $(PIP_QUIET) --no-deps -c requirements.lock -r requirements-nodeps.txt
	$(BIN)/python scripts/post_install.py
	$(BIN)/pip install $(PIP_QUIET) --no-deps -e .
	touch $(STAMP)

repro: $(STAMP)
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/seppo plan
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/dvc repro

repro-video: $(STAMP)  # the text-to-video pipeline (video/dvc.yaml; docs/video.md)
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/seppo plan
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/dvc repro video/dvc.yaml

test: $(STAMP)
	PATH="$(abspath $(BIN)):$$PATH" bash scripts/test.sh

test-fast: $(STAMP)  # the suite without the tests marked slow (end-to-end training and sampling)
	PATH="$(abspath $(BIN)):$$PATH" bash scripts/test.sh -m "not slow"

lock:  # after `$(BIN)/pip install NAME==VERSION` of a changed pin in the venv
	{ sed -n '1,4p' requirements.lock; $(BIN)/pip freeze --exclude-editable; } > requirements.lock.tmp
	mv requirements.lock.tmp requirements.lock
