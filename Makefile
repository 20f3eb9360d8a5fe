# Assay. `make test` (as root) runs every test: host tests, fuzzing, the
# generated-code drift check and the BPF LSM suite in a QEMU guest.
export PATH := /usr/local/go/bin:$(PATH)
GO ?= go
FUZZTIME ?= 10s

.PHONY: all build man generate check-generate deps lint unit fuzz test vmtest bench clean

all: build

build:
	$(GO) build -o assay ./cmd/assay

# Man pages (section 1) from the command definitions, into man/man1.
man:
	rm -rf man/man1
	$(GO) run ./cmd/genman man/man1

deps:
	bash scripts/install-deps.sh

# Rebuild the BPF object and its Go bindings (needs clang and llvm-strip).
generate:
	$(GO) generate ./internal/kernel

# CI: regenerate and fail when the committed object or bindings are stale.
check-generate: generate
	@git diff --exit-code --stat -- internal/kernel || \
		{ echo "generated BPF files are stale: run 'make generate' and commit"; exit 1; }

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); [ -z "$$out" ] || { echo "gofmt needed:"; echo "$$out"; exit 1; }
	$(GO) vet ./...
	$(GO) vet -tags vmtest ./test/lsm/

# Host tests: unit tests and end-to-end tests with the real binary (root).
unit:
	$(GO) test -count=1 ./...

fuzz:
	$(GO) test -run='^$$' -fuzz=FuzzParse -fuzztime=$(FUZZTIME) ./internal/policy/
	$(GO) test -run='^$$' -fuzz=FuzzDecode -fuzztime=$(FUZZTIME) ./internal/events/

test: deps check-generate lint unit fuzz vmtest

clean:
	rm -f assay
	rm -rf man
	rm -rf .cache

include test/vm/vm.mk
include bench/bench.mk
