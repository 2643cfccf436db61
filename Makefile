# herd — run `make help` for the targets.
SHELL := /bin/bash
GO ?= go
ADDR ?= 127.0.0.1:8080
DATA ?= herd-data
VERSION ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X github.com/herdhq/herd/internal/cli.Version=$(VERSION)
GOTEST_FLAGS ?= -race -shuffle=on -timeout 20m
# The real-node test (deploy/e2e) runs where a node can: as root on Linux.
KUBE_NODE := $(shell [ "$$(id -u)" = 0 ] && [ "$$(uname -s)" = Linux ] && echo 1)
# The VMAF tests' measuring ffmpeg (a static build scripts/install-deps.sh
# fetches) exists for x86-64 Linux only; elsewhere those tests are skipped.
VMAF_REQUIRED := $(shell [ "$$(uname -sm)" = "Linux x86_64" ] && echo 1)
# golangci-lint, built once from the module proxy with the local Go into the
# tool cache that scripts/install-deps.sh uses for MinIO; the version is in the
# file name, so changing it here builds the new one. It must be built with a Go
# at least as new as go.mod's (v2.15.0 with Go 1.26.8 is).
GOLANGCI_LINT_VERSION := v2.15.0
TOOLS ?= $(HOME)/.cache/herd/bin
GOLANGCI_LINT := $(TOOLS)/golangci-lint-$(GOLANGCI_LINT_VERSION)
LINT_FLAGS ?=

.PHONY: help deps deps-test build run test lint e2e-kube chaos fuzz bench bench-quick vet fmt clean image web-vendor

help: ## show the targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "} {printf "  %-10s %s\n", $$1, $$2}'

deps: ## install what herd needs at run time (ffmpeg) when it is missing
	@scripts/install-deps.sh

deps-test: ## install what the tests need when missing (ffmpeg, PostgreSQL, chromium, MinIO, Kubernetes builds; as root containerd, runc, CNI plugins)
	@scripts/install-deps.sh test

build: ## build bin/herd
	$(GO) build -trimpath -ldflags "$(LDFLAGS)" -o bin/herd ./cmd/herd

run: deps build ## install ffmpeg if missing, build, and start herd serve (data in ./herd-data)
	bin/herd serve --data $(DATA) --addr $(ADDR)

test: deps-test lint ## install what the tests need, lint (go vet's checks among them), and run every test with the race detector
	HERD_REQUIRE_POSTGRES=1 HERD_REQUIRE_MINIO=1 HERD_REQUIRE_KUBE=1 HERD_REQUIRE_BROWSER=1 HERD_REQUIRE_HANDBRAKE=1 HERD_REQUIRE_VMAF=$(VMAF_REQUIRED) HERD_KUBE_NODE=$(KUBE_NODE) $(GO) test $(GOTEST_FLAGS) ./...

e2e-kube: deps-test ## herd's manifests on a real Kubernetes node started here (root; hack/kube/node.sh), with real clips, a killed pod and pull workers
	HERD_KUBE_NODE=1 $(GO) test -v -count=1 -run TestNode -timeout 20m ./deploy/e2e/

chaos: deps ## chaos run: 60 jobs (generated and real clips) on 3 worker processes while workers and the server are SIGKILLed and restarted, then the checks and a summary (HERD_CHAOS_* change it; HERD_CHAOS_SEED repeats a run)
	HERD_CHAOS_JOBS=$${HERD_CHAOS_JOBS:-60} HERD_CHAOS_WORKERS=$${HERD_CHAOS_WORKERS:-3} HERD_CHAOS_SERVER_KILLS=$${HERD_CHAOS_SERVER_KILLS:-3} \
	HERD_CHAOS_WORKER_KILLS=$${HERD_CHAOS_WORKER_KILLS:-8} HERD_CHAOS_REAL=$${HERD_CHAOS_REAL:-3} \
	$(GO) test -v -count=1 -run '^TestChaos$$' -timeout 30m ./cmd/herd/

fuzz: ## run every fuzz target (progress parser, probe JSON, sniffer, profile and config YAML, API bodies, library names, library rules, subtitle files) for FUZZTIME each (default 2m); their seeds run in make test
	FUZZTIME=$(or $(FUZZTIME),2m) GO=$(GO) scripts/fuzz.sh

bench: deps-test build ## herd against one ffmpeg command, ffmpeg per rendition, HandBrakeCLI and dd; overhead, queue and API latency; writes docs/BENCHMARKS.md (about 25 minutes on 2 cores)
	$(GO) run ./cmd/herd-bench -herd bin/herd -out docs/BENCHMARKS.md
	$(GO) test -run '^$$' -bench BenchmarkClaimWakeup -benchtime 200x ./internal/remote/

bench-quick: deps-test build ## every benchmark on small inputs, under two minutes (make test runs it too, as internal/bench TestQuick); report in bin/BENCHMARKS-quick.md
	$(GO) run ./cmd/herd-bench -quick -herd bin/herd -out bin/BENCHMARKS-quick.md

image: deps ## build the herd container image without Docker: bin/herd-image.tar (docker load / ctr images import)
	VERSION=$(VERSION) scripts/build-image.sh bin/herd-image.tar herd:$(VERSION)

web-vendor: ## refresh the web UI's browser libraries (hls.js, tus-js-client), the players the browser tests use (Shaka, dash.js; cmd/herd/testdata/players, not embedded; they use the UI's hls.js) and their accessibility audit (axe-core; cmd/herd/testdata/axe) from npm at the versions pinned in web/package-lock.json; commit the result
	cd web && npm ci --no-audit --no-fund
	cp web/node_modules/hls.js/dist/hls.min.js internal/web/assets/vendor/hls.min.js
	cp web/node_modules/hls.js/LICENSE internal/web/assets/vendor/hls.js.LICENSE
	cp web/node_modules/tus-js-client/dist/tus.min.js internal/web/assets/vendor/tus.min.js
	cp web/node_modules/tus-js-client/LICENSE internal/web/assets/vendor/tus-js-client.LICENSE
	cd web && node -e 'const l=require("./package-lock.json").packages;for(const p of ["hls.js","tus-js-client"])console.log(p+" "+l["node_modules/"+p].version+" "+l["node_modules/"+p].integrity)' > ../internal/web/assets/vendor/VERSIONS
	mkdir -p cmd/herd/testdata/players
	cp web/node_modules/shaka-player/dist/shaka-player.compiled.js cmd/herd/testdata/players/shaka-player.compiled.js
	cp web/node_modules/shaka-player/LICENSE cmd/herd/testdata/players/shaka-player.LICENSE
	cp web/node_modules/dashjs/dist/modern/umd/dash.all.min.js cmd/herd/testdata/players/dash.all.min.js
	cp web/node_modules/dashjs/LICENSE.md cmd/herd/testdata/players/dashjs.LICENSE
	cd web && node -e 'const l=require("./package-lock.json").packages;for(const p of ["shaka-player","dashjs"])console.log(p+" "+l["node_modules/"+p].version+" "+l["node_modules/"+p].integrity)' > ../cmd/herd/testdata/players/VERSIONS
	mkdir -p cmd/herd/testdata/axe
	cp web/node_modules/axe-core/axe.min.js cmd/herd/testdata/axe/axe.min.js
	cp web/node_modules/axe-core/LICENSE cmd/herd/testdata/axe/axe-core.LICENSE
	cd web && node -e 'const l=require("./package-lock.json").packages;for(const p of ["axe-core"])console.log(p+" "+l["node_modules/"+p].version+" "+l["node_modules/"+p].integrity)' > ../cmd/herd/testdata/axe/VERSIONS

# The linter compiles every package (for its dependencies' export data) into
# the Go build cache. With the flags the container image's herd is built with
# (scripts/image-rootfs.sh: no cgo, -trimpath), that compile is the one the
# real-node test's image build needs, so a cold make test does it once, not twice.
lint: $(GOLANGCI_LINT) ## golangci-lint with .golangci.yml (go vet, staticcheck, errcheck, gosec, ...) and a check that go.mod and go.sum are tidy (LINT_FLAGS=-j1 to leave a core free)
	@$(GO) mod tidy -diff || { echo "go.mod or go.sum is not tidy (the diff above): run go mod tidy" >&2; exit 1; }
	CGO_ENABLED=0 GOFLAGS="$(GOFLAGS) -trimpath" $(GOLANGCI_LINT) run $(LINT_FLAGS) ./...

$(GOLANGCI_LINT):
	@echo "Building golangci-lint $(GOLANGCI_LINT_VERSION) into $(TOOLS) (once, about 3 minutes) ..." >&2
	@mkdir -p $(TOOLS) && tmp=$$(mktemp -d $(TOOLS)/.golangci-lint.XXXXXX) && \
	  (cd / && GOBIN=$$tmp GOFLAGS= GOTOOLCHAIN=local $(GO) install github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$(GOLANGCI_LINT_VERSION)) && \
	  mv $$tmp/golangci-lint $@ && rmdir $$tmp || { rm -rf $$tmp; exit 1; }

vet: ## go vet and gofmt check
	$(GO) vet ./...
	@test -z "$$(gofmt -l cmd internal)" || { gofmt -l cmd internal; echo "gofmt needed"; exit 1; }

fmt: ## gofmt everything
	gofmt -w cmd internal

clean: ## remove build outputs (keeps herd-data)
	rm -rf bin
