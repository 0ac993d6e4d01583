# ttsgw: the two commands users need are `make up` and `make test`; both set themselves up.
VENV      := .venv
PY        := $(VENV)/bin/python
STATE_DIR ?= .ttsgw
STAMP     := $(VENV)/.installed

.PHONY: setup up test test-fast lint clean

setup: $(STAMP)
	@scripts/system-packages.sh

$(STAMP): pyproject.toml
	@scripts/system-packages.sh
	@test -x $(PY) || python3 -m venv $(VENV)
	@$(PY) -m pip install -q --upgrade pip
	@# The local CPU build of torch; any other spec pulls gigabytes of CUDA wheels.
	@$(PY) -m pip install -q torch==2.13.0
	@$(PY) -m pip install -q -e '.[worker,dev]'
	@touch $(STAMP)

up: setup
	$(VENV)/bin/ttsgw up --state-dir $(STATE_DIR)

test: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy ttsgw_contract ttsgw_common control_plane gateway tts_backends ttsgw
	$(PY) -m pytest -q -p no:cacheprovider

# The quick loop before `make test`: no real Envoy, so no e2e stacks (CI still runs `make test`).
test-fast: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy ttsgw_contract ttsgw_common control_plane gateway tts_backends ttsgw
	$(PY) -m pytest -q -p no:cacheprovider -m "not e2e" tests/unit tests/integration

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy ttsgw_contract ttsgw_common control_plane gateway tts_backends ttsgw

clean:
	rm -rf $(VENV) build *.egg-info
