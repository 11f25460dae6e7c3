# Makefile: the common commands. `make test` is the README's test command (what
# .ci/run runs); `make bench-compare` measures metcd and etcd side by side and
# writes docs/performance.md, docs/performance.png and
# docs/performance-results.json (about 35 minutes on 2 cores; pass flags with
# ARGS, e.g. make bench-compare ARGS=--quick for a smoke run of a few minutes).

GO ?= go
ARGS ?=

.PHONY: build test bench-compare

# Every command (metcd, metcd-bench, metcd-benchcompare, ...) into bin/.
build:
	$(GO) build -o bin/ ./cmd/...

test:
	$(GO) test -race -count=1 -timeout 30m ./...

bench-compare:
	$(GO) run ./cmd/metcd-benchcompare $(ARGS)
