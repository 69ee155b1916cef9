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

.PHONY: help venv demo test test-heavy dev bench system-deps tools images clean minikube-up minikube-dev minikube-image minikube-down eks-infra eks-image eks-deploy eks-destroy

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
	$(VENV)/bin/dagster dev -h 127.0.0.1 -w workspace.yaml

# Debian packages the tests need (Chromium for the UI tests, PostgreSQL for the shared
# instance, shellcheck for the scripts); installs only what is missing.
system-deps:
	bash .ci/system-deps.sh

# checkov, detect-secrets and kubernetes-validate live in their own virtualenv: their pinned
# dependencies clash with dagster's.
$(TOOLS_VENV)/.installed: .ci/tools-requirements.txt
	$(PYTHON) -m venv $(TOOLS_VENV)
	$(TOOLS_VENV)/bin/pip install -q --upgrade pip
	$(TOOLS_VENV)/bin/pip install -q -r .ci/tools-requirements.txt
	touch $@

tools: $(TOOLS_VENV)/.installed

# Minikube (deploy/minikube): the cluster, Dagster on the laptop with every step a Job in it.
minikube-up:
	deploy/minikube/up.sh

minikube-dev: venv
	deploy/minikube/dev.sh

minikube-image:
	minikube -p $${KTX_MINIKUBE_PROFILE:-ktx} image build -t $${KTX_IMAGE:-ktx-dagster:dev} -f deploy/Dockerfile .

minikube-down:
	deploy/minikube/down.sh

# EKS (terraform/, deploy/helm): the region is chosen once, by the first `make eks-infra`
# (EKS_REGION, default us-east-1), and kept in terraform/region.auto.tfvars, which every
# later apply and destroy reads. The chart version is the dagster version we pin.
EKS_REGION ?= us-east-1
DAGSTER_CHART_VERSION := 1.13.27
TF := terraform -chdir=terraform
EKS_OUT := .eks

eks-infra:
	test -f terraform/region.auto.tfvars || echo 'region = "$(EKS_REGION)"' > terraform/region.auto.tfvars
	$(TF) init -input=false
	$(TF) apply
	$$($(TF) output -raw kubeconfig_command)

eks-image:
	mkdir -p $(EKS_OUT)
	repo=$$($(TF) output -raw ecr_repository_url) && region=$$($(TF) output -raw region) && \
	tag=$$(git rev-parse --short HEAD)$$(git diff --quiet HEAD || echo -dirty-$$(date +%s)) && \
	aws ecr get-login-password --region "$$region" | docker login --username AWS --password-stdin "$${repo%%/*}" && \
	docker build --platform linux/amd64 -f deploy/Dockerfile -t "$$repo:$$tag" . && \
	docker push "$$repo:$$tag" && echo "$$tag" > $(EKS_OUT)/image-tag

eks-deploy: venv
	test -f $(EKS_OUT)/image-tag || { echo "no image pushed yet: make eks-image" >&2; exit 1; }
	$(TF) output -json > $(EKS_OUT)/outputs.json
	$(PY) deploy/helm/render_values.py --outputs $(EKS_OUT)/outputs.json --tag $$(cat $(EKS_OUT)/image-tag) --out $(EKS_OUT)
	kubectl create namespace dagster --dry-run=client -o yaml | kubectl apply -f -
	$(TF) output -raw dagster_db_password | kubectl -n dagster create secret generic dagster-postgresql-secret \
		--from-file=postgresql-password=/dev/stdin --dry-run=client -o yaml | kubectl apply -f -
	kubectl apply -f $(EKS_OUT)/step-serviceaccount.yaml
	helm repo add dagster https://dagster-io.github.io/helm --force-update
	helm upgrade --install dagster dagster/dagster --version $(DAGSTER_CHART_VERSION) -n dagster \
		-f $(EKS_OUT)/values-eks.yaml --wait
	@echo "UI: kubectl -n dagster port-forward svc/dagster-webserver 3000:80, then http://127.0.0.1:3000"

eks-destroy:
	-helm -n dagster uninstall dagster --wait
	-kubectl delete namespace dagster --wait
	$(TF) destroy

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
		$(PY) -m pytest --durations=25 $(PYTEST_ARGS); rc=$$?; $(DOCKER_ENV) bash .ci/docker.sh stop; exit $$rc

test-heavy: venv system-deps tools
	$(PY) -m pytest -m heavy $(PYTEST_ARGS)

bench: venv
	$(PY) bench/io_manager.py
	$(PY) bench/backfill.py
	$(PY) bench/spotify.py --slices 80

clean:
	rm -rf $(VENV) $(TOOLS_VENV) .dagster_home data build dist deploy/examples/build *.egg-info .cache
