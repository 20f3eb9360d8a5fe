# test/vm/vm.mk: the VM test target, included from the top-level Makefile.
#
#   make vmtest                            all of ./test/lsm in a QEMU guest
#   make vmtest-arm64                      an arm64 guest (qemu-system-aarch64, TCG): the tests in
#                                          VMTEST_ARM64_RUN, or VMTEST_RUN's
#   make vmtest-both                       both at the same time (make test; test/vm/both.sh)
#   make vmtest VMTEST_RUN='Loop|Tmpfs'    only tests matching the go test -run regex
#   VMTEST_NO_ASSAY=1 make vmtest          tolerate a missing ./cmd/assay
#
# See test/vm/run.sh. The kernel and build outputs are cached in .cache/vm/.

VMTEST_RUN ?=

# Including this file must not change the including Makefile's default goal.
vmtest_saved_default_goal := $(.DEFAULT_GOAL)

.PHONY: vmtest vmtest-arm64 vmtest-both
vmtest:
	bash test/vm/run.sh $(if $(VMTEST_RUN),'$(VMTEST_RUN)')

# The arm64 guest emulates a foreign CPU (several times slower than the
# amd64 guest), so `make test` runs the tests that cover what differs per
# architecture (the trace program's syscall numbers and registers, BPF
# trampolines for the LSM hooks, the socket programs) unless VMTEST_RUN
# says otherwise (VMTEST_RUN=. for the whole suite).
# Of TestMCPFilesServer it runs the json_mcp case (--trace, --mcp, JSON
# events: the superset of the four): each case is an assay start and exit,
# and the exit detaches every BPF LSM hook, which costs the kernel RCU Tasks
# grace periods per hook (1-3 s each for 18 hooks under TCG). The
# MCPFilesServer/json_mcp part filters subtests of every test the regex
# names: the other tests named here have none (give them a case of their own
# in the regex before adding subtests to them).
VMTEST_ARM64_RUN ?= Doctor|ExactRule|DirectoryRule|LinkRename|Trace|SessionSurvives|MCPFilesServer/json_mcp
VMTEST_ARM64_TIMEOUT ?= 1200

vmtest-arm64:
	VMTEST_ARCH=arm64 VMTEST_TIMEOUT=$(VMTEST_ARM64_TIMEOUT) bash test/vm/run.sh '$(or $(VMTEST_RUN),$(VMTEST_ARM64_RUN))'

# Both guests at once: each keeps about one of CI's two cores busy.
vmtest-both:
	MAKE='$(MAKE)' bash test/vm/both.sh

.DEFAULT_GOAL := $(vmtest_saved_default_goal)
