package e2e_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/assaymcp/assay/internal/assaytest"
)

// TestHundredThousandCIDRs: a policy with 100k CIDRs (half IPv4, half IPv6)
// and 1k ports loads, and the kernel matches entries anywhere in it.
func TestHundredThousandCIDRs(t *testing.T) {
	assaytest.Privileged(t)
	t.Parallel()
	var b strings.Builder
	b.WriteString("version: 1\nnetwork:\n  deny_ports:\n")
	for i := 0; i < 1000; i++ {
		fmt.Fprintf(&b, "    - %d\n", 20000+i)
	}
	b.WriteString("  deny_cidrs:\n")
	// 50k IPv4 /32s in 10.0.0.0/8 and 50k IPv6 /128s in fd00::/16, plus
	// the loopback destinations under test at the end, with fixed ids.
	for i := 0; i < 50000; i++ {
		fmt.Fprintf(&b, "    - 10.%d.%d.%d/32\n", i>>16&0xff, i>>8&0xff, i&0xff)
		fmt.Fprintf(&b, "    - \"fd00::%x:%x/128\"\n", i>>16, i&0xffff)
	}
	b.WriteString("    - {cidr: 127.0.0.9/32, id: 900001}\n    - {cidr: \"::1/128\", id: 900002}\n")
	dir := t.TempDir()
	pol := filepath.Join(dir, "big.yaml")
	if err := os.WriteFile(pol, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	cg := assaytest.NewCgroup(t)
	start := time.Now()
	m := assaytest.StartMonitor(t, "monitor", "--policy", pol, "--cgroup", cg.Path, "--output", "json")
	t.Logf("100k CIDRs + 1k ports: monitor enforcing after %v", time.Since(start))

	blocked4 := assaytest.ListenTCP(t, "127.0.0.9:0")
	blocked6 := assaytest.ListenTCP(t, "[::1]:0")
	open4 := assaytest.ListenTCP(t, "127.0.0.1:0")
	if r := assaytest.Probe(t, &cg, "connect", "tcp4", blocked4.String()); r.Errno != "EPERM" {
		t.Errorf("127.0.0.9 (last v4 entry): %+v, want EPERM", r)
	}
	if r := assaytest.Probe(t, &cg, "connect", "tcp6", blocked6.String()); r.Errno != "EPERM" {
		t.Errorf("::1 (last v6 entry): %+v, want EPERM", r)
	}
	if r := assaytest.Probe(t, &cg, "connect", "tcp4", "127.0.0.1:20999"); r.Errno != "EPERM" {
		t.Errorf("port 20999 (last port): %+v, want EPERM", r)
	}
	if r := assaytest.Probe(t, &cg, "connect", "tcp4", open4.String()); !r.Ok() {
		t.Errorf("127.0.0.1 (not listed): %+v, want success", r)
	}
	m.WaitEvents(3, 20*time.Second)
	res := m.Stop()
	ids := map[uint32]bool{}
	for _, e := range res.Events {
		ids[e.RuleID] = true
	}
	if !ids[900001] || !ids[900002] || len(res.Events) != 3 {
		t.Errorf("events %v, want rules 900001, 900002 and the port's", res.EventLines)
	}
}
