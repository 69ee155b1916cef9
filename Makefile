# Two commands on a fresh machine: `make demo` and `make test`. Everything they need is
# installed here (virtualenv, Python packages, Debian packages for the browser/db tests).

PYTHON      ?= python3
VENV        ?= .venv
PY          := $(VENV)/bin/python
TOOLS_VENV  ?= .venv-tools
export DAGSTER_HOME ?= $(CURDIR)/.dagster_home
export KTX_DATA_DIR ?= $(CURDIR)/data
export KTX_MAX_CONCURRENT_RUNS ?= 2
PYTEST_ARGS ?=

.PHONY: help venv demo test test-heavy dev bench system-deps tools images clean

help:
	@echo "make demo   - install, prepare sample data, materialize everything locally, print results"
	@echo "make test   - install test dependencies and run the whole suite (heavy cases excluded)"
	@echo "make dev    - dagster dev -w workspace.yaml on the local instance ($(DAGSTER_HOME))"
	@echo "make bench  - benchmarks under bench/ (numbers and ratios, last line JSON)"

# Installed with the tested versions (.ci/constraints.txt); pyproject.toml keeps ranges.
$(VENV)/.installed: pyproject.toml .ci/constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -c .ci/constraints.txt -e '.[test]'
	touch $@

venv: $(VENV)/.installed

# The local instance: SQLite storage, a run queue with a laptop-sized concurrency limit.
$(DAGSTER_HOME)/dagster.yaml: deploy/local/dagster.yaml
	mkdir -p $(DAGSTER_HOME)
	cp deploy/local/dagster.yaml $@

# The examples are this repository's two code locations (workspace.yaml): sample inputs,
# every partition of every asset through `ktx materialize`, then what came out.
demo: venv $(DAGSTER_HOME)/dagster.yaml
	$(PY) -m assets.samples write
	$(PY) -m spotify_mpc.samples write
	$(VENV)/bin/ktx materialize -w workspace.yaml
	$(PY) -m assets.samples show
	$(PY) -m spotify_mpc.samples show

dev: venv $(DAGSTER_HOME)/dagster.yaml
	$(PY) -m assets.samples write
	$(VENV)/bin/ktx sync -w workspace.yaml
	$(VENV)/bin/dagster dev -w workspace.yaml

# Debian packages the tests need (Chromium for the UI tests, PostgreSQL for the shared
# instance, shellcheck for the scripts); installs only what is missing.
system-deps:
	bash .ci/system-deps.sh

# checkov lives in its own virtualenv: its pinned dependencies clash with dagster's.
$(TOOLS_VENV)/.installed:
	$(PYTHON) -m venv $(TOOLS_VENV)
	$(TOOLS_VENV)/bin/pip install -q --upgrade pip
	$(TOOLS_VENV)/bin/pip install -q 'checkov>=3.2,<4'
	touch $@

tools: $(TOOLS_VENV)/.installed

# The container tests' Docker daemon (.ci/docker.sh: private, host network only) and images
# (.ci/test-images.sh: a Debian base from Debian's packages, the image from deploy/Dockerfile).
KTX_DOCKER_ROOT ?= /var/lib/ktx-docker
KTX_DOCKER ?= /usr/bin/docker
DOCKER_ENV = DOCKER_HOST=unix://$(KTX_DOCKER_ROOT)/docker.sock KTX_DOCKER=$(KTX_DOCKER) KTX_DOCKER_ROOT=$(KTX_DOCKER_ROOT)

images: venv system-deps
	$(DOCKER_ENV) bash .ci/docker.sh start
	$(DOCKER_ENV) bash .ci/test-images.sh $(abspath $(PY)) || { $(DOCKER_ENV) bash .ci/docker.sh stop; exit 1; }

# In CI a missing tool fails its tests instead of skipping them. The daemon `images` started
# is stopped again whatever the tests did.
test: venv system-deps tools images
	$(DOCKER_ENV) KTX_REQUIRE_DOCKER=1 KTX_REQUIRE_STATIC_TOOLS=1 KTX_REQUIRE_POSTGRES=1 KTX_REQUIRE_BROWSER=1 \
		$(PY) -m pytest $(PYTEST_ARGS); rc=$$?; $(DOCKER_ENV) bash .ci/docker.sh stop; exit $$rc

test-heavy: venv system-deps tools
	$(PY) -m pytest -m heavy $(PYTEST_ARGS)

bench: venv
	$(PY) bench/io_manager.py
	$(PY) bench/backfill.py
	$(PY) bench/spotify.py --slices 80

clean:
	rm -rf $(VENV) $(TOOLS_VENV) .venv-journey .dagster_home data build dist deploy/examples/build *.egg-info
