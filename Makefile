# vipcast: `make demo` shows the main job in the network lab, `make test`
# runs every test (unit, integration, netlink and e2e).
SHELL      := /bin/bash
VERSION    ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
GO         ?= go
STATICCHECK_VERSION := v0.8.2
PROMTOOL_VERSION    := v0.316.0
BIN        := $(CURDIR)/bin
LDFLAGS    := -s -w -X main.version=$(VERSION)
FUZZTIME   ?= 15s
# make image: bin/vipcast-image.tar named $(IMAGE_REPO):$(IMAGE_TAG), dated
# at the commit so the same binary gives the same digest.
IMAGE_REPO ?= ghcr.io/vipcast/vipcast
IMAGE_TAG  ?= $(VERSION)
SOURCE_DATE_EPOCH ?= $(shell git log -1 --format=%ct 2>/dev/null || echo 0)
REVISION   ?= $(shell git rev-parse HEAD 2>/dev/null)
APT_PKGS   := frr bird2 etcd-server iputils-ping socat tcpdump openssl iproute2 procps containerd runc containernetworking-plugins iptables util-linux

BUF_VERSION                := v1.75.0
PROTOC_GEN_GO_VERSION      := v1.36.12
PROTOC_GEN_GO_GRPC_VERSION := v1.6.2

.PHONY: all build image test unit chart helm promtool e2e lint fuzz demo bench deps tools generate clean

all: build

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/vipcast ./cmd/vipcast

## image: vipcast's OCI image without a container engine: bin/vipcast-image.tar,
## for `ctr -n k8s.io images import`, `docker load` or `kind load image-archive`.
image: build
	SOURCE_DATE_EPOCH=$(SOURCE_DATE_EPOCH) $(GO) run ./cmd/vipcast-image -binary $(BIN)/vipcast \
	  -image $(IMAGE_REPO):$(IMAGE_TAG) -version '$(VERSION)' -revision '$(REVISION)' -o $(BIN)/vipcast-image.tar

## test: everything: unit, integration, netlink (root), the chart and the e2e lab (root).
test: unit chart e2e

## chart: helm lint, golden renders and schema rejections.
chart: helm build
	PATH=$(BIN):$$PATH bash charts/vipcast/tests/run.sh

## unit: unit and integration tests (netlink tests need root and say so).
unit: promtool
	$(GO) test -race -count=1 ./...

## e2e: the network lab with FRR, BIRD, etcd and real kube-apiservers, and the
## cluster lab (TestCluster, TestClusterBootstrap: containerd, kubelets, the
## chart from bin/vipcast-image.tar); TestMain first builds the Kubernetes
## binaries (cold: ~9 min on 2 cores). CLUSTER=0 leaves the cluster lab out.
E2E_CLUSTER := $(if $(filter 0,$(CLUSTER)),,VIPCAST_E2E_CLUSTER=1)
e2e: deps build helm image
	mkdir -p e2e/.cache && cd e2e && VIPCAST_E2E=1 $(E2E_CLUSTER) VIPCAST_BIN=$(BIN)/vipcast VIPCAST_E2E_RESULTS=$(CURDIR)/e2e/.cache/e2e-results.jsonl $(GO) test -count=1 -timeout 40m ./...

lint: tools
	@out=$$(gofmt -l $$(git ls-files '*.go' | grep -v '\.pb\.go$$')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(BIN)/staticcheck ./...
	cd e2e && $(GO) vet ./... && $(BIN)/staticcheck ./...

## generate: the gRPC API's Go code from speaker/api/v1/vipcast.proto (buf lint, format, generate).
generate:
	GOBIN=$(BIN) $(GO) install github.com/bufbuild/buf/cmd/buf@$(BUF_VERSION)
	GOBIN=$(BIN) $(GO) install google.golang.org/protobuf/cmd/protoc-gen-go@$(PROTOC_GEN_GO_VERSION)
	GOBIN=$(BIN) $(GO) install google.golang.org/grpc/cmd/protoc-gen-go-grpc@$(PROTOC_GEN_GO_GRPC_VERSION)
	cd speaker/api && $(BIN)/buf lint && $(BIN)/buf format --diff --exit-code && $(BIN)/buf generate

## fuzz: run every fuzz target for FUZZTIME each.
fuzz:
	@set -e; for pkg in $$($(GO) list ./...); do \
	  for f in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz' || true); do \
	    echo "== $$pkg $$f"; $(GO) test -run XXX -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg; \
	  done; done

## demo: a 3-node lab; fail one apiserver; watch the route shrink and heal.
## CLUSTER=1: the cluster version: docs/install.md's bootstrap (static pod,
## kubeadm-style init and joins through the VIP, helm install, handover to
## the DaemonSet), then one apiserver killed and restored.
DEMO_CLUSTER := $(filter 1,$(CLUSTER))
demo: deps build $(if $(DEMO_CLUSTER),helm image)
	cd e2e && VIPCAST_BIN=$(BIN)/vipcast $(GO) run ./cmd/demo $(if $(DEMO_CLUSTER),-cluster -image $(BIN)/vipcast-image.tar -helm $(BIN)/helm)

## bench: failover benchmark (see docs/performance.md); BENCH_ARGS passes flags,
## e.g. BENCH_ARGS='-baseline /tmp/vipcast-before.bin -soak 1m'.
BENCH_ARGS ?=
bench: deps build
	cd e2e && VIPCAST_BIN=$(BIN)/vipcast $(GO) run ./cmd/bench $(BENCH_ARGS)

## deps: the lab's Debian packages (root); a no-op when present.
deps:
	@missing=""; for p in $(APT_PKGS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

promtool:
	@test -x $(BIN)/promtool || GOBIN=$(BIN) $(GO) install github.com/prometheus/prometheus/cmd/promtool@$(PROMTOOL_VERSION)

helm:
	@test -x $(BIN)/helm || GOBIN=$(BIN) $(GO) install helm.sh/helm/v3/cmd/helm@v3.22.0

tools:
	@test -x $(BIN)/staticcheck || GOBIN=$(BIN) $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)

clean:
	rm -rf $(BIN)
