# test/vm/vm.mk: the VM test target, included from the top-level Makefile.
#
#   make vmtest                            all of ./test/lsm in a QEMU guest
#   make vmtest-arm64                      the same in an arm64 guest (qemu-system-aarch64, TCG)
#   make vmtest VMTEST_RUN='Loop|Tmpfs'    only tests matching the go test -run regex
#   VMTEST_NO_ASSAY=1 make vmtest          tolerate a missing ./cmd/assay
#
# See test/vm/run.sh. The kernel and build outputs are cached in .cache/vm/.

VMTEST_RUN ?=

# Including this file must not change the including Makefile's default goal.
vmtest_saved_default_goal := $(.DEFAULT_GOAL)

.PHONY: vmtest vmtest-arm64
vmtest:
	bash test/vm/run.sh $(if $(VMTEST_RUN),'$(VMTEST_RUN)')

vmtest-arm64:
	VMTEST_ARCH=arm64 bash test/vm/run.sh $(if $(VMTEST_RUN),'$(VMTEST_RUN)')

.DEFAULT_GOAL := $(vmtest_saved_default_goal)
