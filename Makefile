# edgemc — build, run and test targets. `make help` lists them.
SHELL := /bin/bash
GO ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X main.version=$(VERSION)
BIN := bin/edgemc

.PHONY: help build run test bench-smoke stress-test proto bench bench-store bench-signaling fuzz faults package test-package clean

PKG_ARCHES := amd64 arm64

help: ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | column -t -s $$'\t'

build: ## static binary in bin/edgemc, version stamped from git
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/edgemc

run: build ## run edgemc on this machine in lab mode (development GC and token issuer on loopback)
	$(BIN) lab

test: ## vet + race-enabled tests of every package (fuzz seed corpora included), then bench-smoke
	$(GO) vet ./...
	$(GO) test -race -count=1 -timeout 15m ./...
	@$(MAKE) --no-print-directory bench-smoke

BENCH_SMOKE_TIME ?= 20x
bench-smoke: ## every Go benchmark, briefly (-benchtime 20x, -short sizes), so that they keep compiling and running
	$(GO) test -run '^$$' -bench . -benchmem -benchtime $(BENCH_SMOKE_TIME) -short -timeout 10m ./...

STRESS_RUNS ?= 5
STRESS_TEST ?= $(MAKE) --no-print-directory test
STRESS_NG ?= stress-ng
stress-test: ## make test STRESS_RUNS (5) times in a row beside a CPU hog (stress-ng --cpu 2, else two `yes`); fails if any run fails
	@hogs=(); \
	stop_hogs() { if [ $${#hogs[@]} -gt 0 ]; then kill $${hogs[@]} 2>/dev/null; wait $${hogs[@]} 2>/dev/null; fi; hogs=(); }; \
	trap stop_hogs EXIT; trap 'exit 130' INT TERM HUP; \
	if command -v $(STRESS_NG) >/dev/null 2>&1; then \
		echo "== CPU hog: $(STRESS_NG) --cpu 2"; $(STRESS_NG) --cpu 2 --quiet & hogs+=($$!); \
	else \
		echo "== CPU hog: two yes > /dev/null ($(STRESS_NG) not found)"; \
		yes >/dev/null & hogs+=($$!); yes >/dev/null & hogs+=($$!); \
	fi; \
	failed=0; \
	for i in $$(seq 1 $(STRESS_RUNS)); do \
		echo "== stress-test run $$i of $(STRESS_RUNS)"; \
		if ! $(STRESS_TEST); then failed=$$((failed + 1)); echo "== stress-test run $$i FAILED"; fi; \
	done; \
	stop_hogs; \
	echo "== stress-test: $$failed of $(STRESS_RUNS) runs failed"; \
	[ $$failed -eq 0 ]

proto: ## regenerate the protobuf Go code (protoc 3.21.12, protoc-gen-go v1.36.12, protoc-gen-go-grpc v1.6.2)
	$(GO) install google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12
	$(GO) install google.golang.org/grpc/cmd/protoc-gen-go-grpc@v1.6.2
	PATH="$$($(GO) env GOPATH)/bin:$$PATH" protoc -I. -I/usr/include \
		--go_out=. --go_opt=paths=source_relative \
		--go-grpc_out=. --go-grpc_opt=paths=source_relative \
		gc/internalpb/internal.proto webtransport/signalingpb/signaling.proto

BENCH_FLAGS ?=
bench: build ## side by side on this machine, every figure 3 times (25 to 30 min here): joins, idle sessions, fan-out, 2,000 and 10,000 sessions with restarts, store, idle cost vs the floors and Redis (BENCH_FLAGS, e.g. -cpuprofile FILE)
	$(GO) run ./cmd/edgemc/internal/bench -edgemc $(BIN) $(BENCH_FLAGS)

bench-signaling: build ## joins and host-mute fan-out to N = 10, 100, 500 over QUIC: edgemc vs the same-work webtransport-go floor
	$(GO) run ./cmd/edgemc/internal/bench -edgemc $(BIN) -suite signaling $(BENCH_FLAGS)

bench-store: ## fenced durable writes and nonces: edgemc's store vs redis-server (Lua, appendfsync always/everysec)
	$(GO) run ./store/internal/redisbench -duration 3s -writers 1,8,64

GC_OUTAGE ?= 2m
faults: ## fault suite on the real binary at full size: GC outage of GC_OUTAGE (2m), 10,000 half-open handshakes, SIGKILL under 1,000 joins, the attacks of README "Limits" (100,000 header-only gRPC calls, 2,000 gRPC and HTTP connections, a 50,000-update fan-out, 20 s of sessions that never join, 3,000 refused joins)
	EDGEMC_FAULTS=long EDGEMC_FAULTS_GC_OUTAGE=$(GC_OUTAGE) $(GO) test -count=1 -timeout 30m -v -run '^TestFault' ./cmd/edgemc/

FUZZTIME ?= 20s
fuzz: ## run every fuzz target (grep 'func Fuzz') for FUZZTIME (20s) each, one after another
	@set -e; for f in $$(grep -rl --include='*_test.go' '^func Fuzz' . | sort); do \
		for target in $$(sed -n 's/^func \(Fuzz[A-Za-z0-9_]*\)(.*/\1/p' "$$f"); do \
			echo "== $$(dirname "$$f") $$target"; \
			$(GO) test -run '^$$' -fuzz "^$$target\$$" -fuzztime $(FUZZTIME) "./$$(dirname "$$f")"; \
		done; \
	done

package: ## .deb and .rpm for amd64 and arm64 in dist/ (nfpm)
	for arch in $(PKG_ARCHES); do \
		CGO_ENABLED=0 GOOS=linux GOARCH=$$arch $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/edgemc-linux-$$arch ./cmd/edgemc || exit 1; \
	done
	packaging/build.sh '$(VERSION)' dist

test-package: package ## build the packages, inspect them and (as root) install them here and under systemd in a Debian container (systemd-nspawn)
	EDGEMC_PACKAGES_DIR=$(CURDIR)/dist EDGEMC_INSTALL_TEST=1 $(GO) test -race -count=1 -timeout 20m -v ./packaging/

clean: ## remove build outputs and the state of `make run` (./edgemc-data)
	rm -rf bin dist edgemc-data
