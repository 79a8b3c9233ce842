# silo: see README.md. `make help` lists the targets.
GO        ?= go
GOTESTFLAGS ?=
# CDK in Go runs on Node through jsii; Node 20 is supported but prints a banner.
export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION := 20

.DEFAULT_GOAL := help
.PHONY: help build test lint demo bench synth

help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-z]+:.*## / {printf "  make %-8s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

build: ## build the silo CLI into bin/
	$(GO) build -o bin/silo ./cmd/silo

test: lint ## run every test: unit, fuzz seed corpora, contract, CDK and e2e against the emulator
	$(GO) test -count=1 -timeout 25m $(GOTESTFLAGS) ./...

lint: ## gofmt and go vet
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

demo: ## run the platform locally (DEMO_EXIT=1 ends after the summary)
	$(GO) run ./cmd/silo local $(if $(DEMO_EXIT),--exit)

bench: ## run the benchmarks and print their tables
	$(GO) test -run '^$$' -bench . -benchmem ./...

synth: ## synthesize the CloudFormation templates
	@echo "no templates yet"
