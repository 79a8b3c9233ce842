# silo: see README.md. `make help` lists the targets.
GO        ?= go
GOTESTFLAGS ?=
# CDK in Go runs on Node through jsii; Node 20 is supported but prints a banner.
export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION := 20

.DEFAULT_GOAL := help
.PHONY: help build test lint demo bench synth

help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-z]+:.*## / {printf "  make %-8s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

# Every lambdas/<fn> with a main.go becomes dist/lambda/<fn>.zip (bootstrap inside).
LAMBDAS   := $(patsubst lambdas/%/main.go,%,$(wildcard lambdas/*/main.go))
LAMBDADIR := dist/lambda

build: ## build the silo CLI into bin/ and every lambdas/<fn> into dist/lambda/<fn>.zip
	$(GO) build -o bin/silo ./cmd/silo
	@for fn in $(LAMBDAS); do \
	  echo "lambda $$fn -> $(LAMBDADIR)/$$fn.zip"; \
	  GOOS=linux GOARCH=arm64 CGO_ENABLED=0 $(GO) build -tags lambda.norpc -trimpath \
	    -o $(LAMBDADIR)/$$fn/bootstrap ./lambdas/$$fn || exit 1; \
	  $(GO) run ./internal/lambdazip/cmd/lambdazip $(LAMBDADIR)/$$fn/bootstrap $(LAMBDADIR)/$$fn.zip || exit 1; \
	done

test: lint ## run every test: unit, fuzz seed corpora, contract, CDK and e2e against the emulator
	$(GO) test -count=1 -timeout 25m $(GOTESTFLAGS) ./...

lint: ## gofmt and go vet
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

demo: ## run the platform locally (DEMO_EXIT=1 ends after the summary)
	$(GO) run ./cmd/silo local --demo $(if $(DEMO_EXIT),--exit)

bench: ## run the benchmarks and print their tables (Go benchmarks, then silo bench vend, probe, rollout and the 10-minute soak)
	$(GO) test -run '^$$' -bench . -benchmem ./registry/ ./internal/probe/
	$(GO) run ./cmd/silo bench vend --tenants 100 --creation 2s --in-progress 5
	$(GO) run ./cmd/silo bench probe --endpoints 10000 --concurrency 500 --hang 1
	$(GO) run ./cmd/silo bench rollout --tenants 200 --plan 1,10%,50%,100% --bake 1s
	$(GO) run ./cmd/silo bench soak --tenants 200 --duration 10m --faults mixed

synth: build ## synthesize both templates into cdk.out/ and refresh stacksets/tenantapp.template.json
	$(GO) run ./cmd/silo synth --out cdk.out --code-dir $(LAMBDADIR) --commit stacksets/tenantapp.template.json
