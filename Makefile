.PHONY: setup test quickstart crds controlplane node e2e-node lint images images-push images-save

setup:        ## create .venv with every extra (uv, cached)
	bash scripts/setup.sh

test:         ## the whole gate CI runs: lint, types, import contracts, CRD freshness, all tests
	bash scripts/check.sh

quickstart:   ## run the whole ReasoningRun locally on the embedded default (no cluster, no GPU)
	bash scripts/setup.sh
	.venv/bin/reasoning run examples/quickstart.yaml

crds:         ## regenerate the CRD YAML from the pydantic models
	.venv/bin/reasoning crds

controlplane: ## build (cached) and start the local control plane with fake GPU nodes
	bash scripts/controlplane/up.sh

IMAGES ?=
REGISTRY ?=
TLS_VERIFY ?= true
IMAGES_DIR ?= $(HOME)/.cache/reasoning-operator/images/archives

images:       ## build every image with podman (Debian base + uv lock; IMAGES="operator serving" for some)
	bash scripts/images/images.sh build $(IMAGES)

images-push:  ## push the images: REGISTRY=my.registry:5000/team retags <name>:<version> there first
	bash scripts/images/images.sh push --registry "$(REGISTRY)" --tls-verify $(TLS_VERIFY) $(IMAGES)

images-save:  ## one uncompressed docker archive per image in IMAGES_DIR (COMBINED=1: one images.tar) for ctr import
	bash scripts/images/images.sh save --dir "$(IMAGES_DIR)" $(if $(COMBINED),--combined) $(IMAGES)

node:         ## build (cached) and start the control plane plus one real kubelet node (root)
	bash scripts/node/up.sh

e2e-node:     ## the real-node tier alone: containerd, kubelet, kube-proxy, CoreDNS, a fake-GPU device plugin
	bash scripts/setup.sh
	bash scripts/node/deps.sh
	bash scripts/controlplane/build.sh >/dev/null
	bash scripts/node/build.sh >/dev/null
	.venv/bin/python -m pytest -q -m node tests/node
