package e2e_test

import (
	"bytes"
	"crypto/sha256"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/assaymcp/assay/internal/assaytest"
)

// TestMakeEbpf: `make ebpf` builds the BPF object at the path asked for,
// without touching the committed (embedded) object or its bindings, and
// `assay monitor --ebpf OBJ` enforces with it: a denied connect is refused
// and reported.
func TestMakeEbpf(t *testing.T) {
	assaytest.Privileged(t)
	t.Parallel()
	for _, tool := range []string{"make", "clang", "llvm-strip"} {
		if _, err := exec.LookPath(tool); err != nil {
			if os.Getenv("CI") == "true" {
				t.Fatalf("CI=true: %s is missing (scripts/install-deps.sh installs it)", tool)
			}
			t.Skipf("%s is missing", tool)
		}
	}
	root, err := assaytest.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	committed, _ := filepath.Glob(filepath.Join(root, "internal/kernel/bpf_*"))
	if len(committed) == 0 {
		t.Fatal("no committed bpf_* files")
	}
	sums := func() map[string][32]byte {
		m := map[string][32]byte{}
		for _, f := range committed {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			m[f] = sha256.Sum256(b)
		}
		return m
	}
	before := sums()
	obj := filepath.Join(t.TempDir(), "sub", "assay-ebpf.o")
	cmd := exec.Command("make", "-s", "ebpf", "EBPF_OUT="+obj)
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("make ebpf: %v\n%s", err, out)
	}
	if b, err := os.ReadFile(obj); err != nil || !bytes.HasPrefix(b, []byte("\x7fELF")) {
		t.Fatalf("make ebpf wrote no ELF object at %s: %v", obj, err)
	}
	after := sums()
	for f, s := range before {
		if after[f] != s {
			t.Errorf("make ebpf changed the committed %s", f)
		}
	}

	cg := assaytest.NewCgroup(t)
	l := assaytest.ListenTCP(t, "127.0.0.1:0")
	pol := writePolicy(t, "version: 1\nnetwork:\n  deny_ports: [{port: %d, id: 40}]\n", l.Port())
	m := monitor(t, pol, cg, "--ebpf", obj, "--output", "json")
	assaytest.RequireProgramCount(t, cg, 1)
	r := assaytest.Probe(t, &cg, "connect", "tcp4", l.String())
	requireEPERM(t, "with --ebpf "+obj, r)
	m.WaitEvents(1, eventTimeout)
	res := m.Stop()
	checkAccounting(t, res, 1)
	if len(res.Events) == 1 {
		checkEvent(t, res.Events[0], netEvent{"connect", "blocked", 40, "inet", "tcp", "127.0.0.1", l.Port(), false}.json(cg, r))
	}
	assaytest.RequireDetached(t, cg)
}
