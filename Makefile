# Assay. `make test` (as root) runs every test: host tests, fuzzing, the
# generated-code drift check and the BPF LSM suite in a QEMU guest.
export PATH := /usr/local/go/bin:$(PATH)
GO ?= go
FUZZTIME ?= 10s
DNS_FUZZTIME ?= 5s

# `assay version` prints VERSION: `git describe` of the checkout.
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo devel)
LDFLAGS := -X github.com/assaymcp/assay/internal/cli.version=$(VERSION)

# make install [PREFIX=/usr/local] [DESTDIR=/staging]
PREFIX ?= /usr/local
BINDIR ?= $(PREFIX)/bin
MANDIR ?= $(PREFIX)/share/man
DATADIR ?= $(PREFIX)/share
UNITDIR ?= $(PREFIX)/lib/systemd/system

# make ebpf: the BPF object for `assay monitor --ebpf OBJ`, built from
# internal/kernel/bpf at a stable path (the committed, embedded object is
# left alone).
EBPF_OUT ?= target/assay-ebpf.o
EBPF_ARCH ?= $(shell uname -m | sed -e 's/x86_64/x86/' -e 's/aarch64/arm64/')

.PHONY: all build build-arm64 man ebpf install uninstall generate check-generate deps lint unit fuzz test vmtest vmtest-arm64 bench clean

all: build

build:
	$(GO) build -ldflags '$(LDFLAGS)' -o assay ./cmd/assay

# Man pages (section 1) from the command definitions, into man/man1.
man:
	rm -rf man/man1
	$(GO) run -ldflags '$(LDFLAGS)' ./cmd/genman man/man1

ebpf:
	mkdir -p $(dir $(EBPF_OUT))
	clang -target bpfel -D__TARGET_ARCH_$(EBPF_ARCH) -I internal/kernel/bpf -I internal/kernel/bpf/include \
		-O2 -g -Wall -Werror -c internal/kernel/bpf/assay.bpf.c -o $(EBPF_OUT)
	llvm-strip -g $(EBPF_OUT)

# The binary, its man pages, shell completions and the systemd unit of a
# pinned monitor (contrib/systemd), under DESTDIR/PREFIX.
install: build man
	install -D -m 0755 assay $(DESTDIR)$(BINDIR)/assay
	install -d $(DESTDIR)$(MANDIR)/man1
	install -m 0644 man/man1/*.1 $(DESTDIR)$(MANDIR)/man1/
	install -d $(DESTDIR)$(DATADIR)/bash-completion/completions $(DESTDIR)$(DATADIR)/zsh/site-functions \
		$(DESTDIR)$(DATADIR)/fish/vendor_completions.d
	./assay completion bash > $(DESTDIR)$(DATADIR)/bash-completion/completions/assay
	./assay completion zsh > $(DESTDIR)$(DATADIR)/zsh/site-functions/_assay
	./assay completion fish > $(DESTDIR)$(DATADIR)/fish/vendor_completions.d/assay.fish
	install -d $(DESTDIR)$(UNITDIR)
	sed 's|/usr/local/bin/assay|$(BINDIR)/assay|g' contrib/systemd/assay-monitor@.service > $(DESTDIR)$(UNITDIR)/assay-monitor@.service
	chmod 0644 $(DESTDIR)$(UNITDIR)/assay-monitor@.service \
		$(DESTDIR)$(DATADIR)/bash-completion/completions/assay $(DESTDIR)$(DATADIR)/zsh/site-functions/_assay \
		$(DESTDIR)$(DATADIR)/fish/vendor_completions.d/assay.fish

uninstall:
	rm -f $(DESTDIR)$(BINDIR)/assay $(DESTDIR)$(MANDIR)/man1/assay.1 $(DESTDIR)$(MANDIR)/man1/assay-*.1 \
		$(DESTDIR)$(DATADIR)/bash-completion/completions/assay $(DESTDIR)$(DATADIR)/zsh/site-functions/_assay \
		$(DESTDIR)$(DATADIR)/fish/vendor_completions.d/assay.fish $(DESTDIR)$(UNITDIR)/assay-monitor@.service

deps:
	bash scripts/install-deps.sh

# Rebuild the BPF objects (amd64 and arm64) and their Go bindings (needs
# clang and llvm-strip).
generate:
	$(GO) generate ./internal/kernel

# CI: regenerate and fail when the committed objects or bindings (both
# architectures) are stale or not committed at all.
check-generate: generate
	@git diff --exit-code --stat -- internal/kernel || \
		{ echo "generated BPF files are stale: run 'make generate' and commit"; exit 1; }
	@out=$$(git ls-files --others --exclude-standard -- internal/kernel); [ -z "$$out" ] || \
		{ echo "generated BPF files are not committed:"; echo "$$out"; exit 1; }

# gofmt, go vet and staticcheck (honnef.co/go/tools, a tool dependency in
# go.mod: `go tool` fetches the pinned version through the module proxy).
lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); [ -z "$$out" ] || { echo "gofmt needed:"; echo "$$out"; exit 1; }
	$(GO) vet ./...
	$(GO) vet -tags vmtest ./test/lsm/
	$(GO) tool staticcheck ./...
	$(GO) tool staticcheck -tags vmtest ./test/lsm/
	$(MAKE) --no-print-directory build-arm64

# arm64 cross-build: the binary and every test package (the guest suite too)
# must compile for arm64.
build-arm64:
	GOARCH=arm64 CGO_ENABLED=0 $(GO) build -o /dev/null ./cmd/assay
	GOARCH=arm64 $(GO) vet ./...
	GOARCH=arm64 $(GO) vet -tags vmtest ./test/lsm/

# Host tests: unit tests and end-to-end tests with the real binary (root).
# The binary is built once for every test package (ASSAY_BIN), into a
# world-readable temporary directory: tests run it as an unprivileged user
# too.
unit:
	@d=$$(mktemp -d) && chmod 0755 $$d && trap 'rm -rf "$$d"' EXIT && \
		$(GO) build -o $$d/assay ./cmd/assay && \
		ASSAY_BIN=$$d/assay $(GO) test -count=1 ./...

fuzz:
	$(GO) test -run='^$$' -fuzz=FuzzParse -fuzztime=$(FUZZTIME) ./internal/policy/
	$(GO) test -run='^$$' -fuzz=FuzzDecode -fuzztime=$(FUZZTIME) ./internal/events/
	$(GO) test -run='^$$' -fuzz=FuzzHandle -fuzztime=$(DNS_FUZZTIME) ./internal/dns/

# The two guest suites run side by side (vmtest-both): each keeps about one
# core busy.
test: deps check-generate lint unit fuzz vmtest-both

clean:
	rm -f assay
	rm -rf man target
	rm -rf .cache

include test/vm/vm.mk
include bench/bench.mk
