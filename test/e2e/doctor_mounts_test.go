package e2e_test

import (
	"os/exec"
	"regexp"
	"strings"
	"testing"

	"github.com/assaymcp/assay/internal/assaytest"
	"github.com/assaymcp/assay/internal/testenv"
)

// TestDoctorMounts: `assay doctor` mounts securityfs (to read the LSM
// list) when it is not mounted, and reports a missing bpffs without
// mounting it (assay needs bpffs only for --pin, and mounts it then). It
// runs in a private mount namespace where both have been unmounted, so the
// host's mounts are never touched; the mount table is read there after
// doctor ran.
func TestDoctorMounts(t *testing.T) {
	assaytest.Privileged(t)
	t.Parallel()
	unshare := testenv.LookPath(t, "unshare", "util-linux; runs doctor in a private mount namespace")
	testenv.LookPath(t, "sh", "the namespace's script")
	script := `set -e
while grep -q ' /sys/kernel/security ' /proc/self/mounts; do umount -l /sys/kernel/security; done
while grep -q ' /sys/fs/bpf ' /proc/self/mounts; do umount -l /sys/fs/bpf; done
echo "before: $(grep -c -e ' /sys/kernel/security securityfs ' -e ' /sys/fs/bpf bpf ' /proc/self/mounts || true)"
"$1" doctor 2>&1 | grep -E ' (lsm-list|bpffs) ' || true
grep -q ' /sys/kernel/security securityfs ' /proc/self/mounts && echo "securityfs: mounted"
grep -q ' /sys/fs/bpf bpf ' /proc/self/mounts && echo "bpffs: mounted"
exit 0
`
	out, err := exec.Command(unshare, "--mount", "--propagation", "private", "sh", "-c", script, "sh", assaytest.Binary(t)).CombinedOutput()
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	got := string(out)
	t.Logf("in the namespace:\n%s", got)
	for _, want := range []string{"before: 0", "securityfs: mounted"} {
		if !strings.Contains(got, want) {
			t.Errorf("output lacks %q", want)
		}
	}
	if strings.Contains(got, "bpffs: mounted") {
		t.Error("doctor mounted bpffs")
	}
	for _, re := range []string{"ok +lsm-list ", `missing \(optional\) +bpffs `} {
		if !regexpMatch(re, got) {
			t.Errorf("doctor output lacks a line matching %q", re)
		}
	}
}

func regexpMatch(re, s string) bool { return regexp.MustCompile("(?m)^" + re).MatchString(s) }
