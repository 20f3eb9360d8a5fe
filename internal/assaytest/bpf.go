package assaytest

import (
	"testing"
	"time"

	"github.com/assaymcp/assay/internal/cgroup"
	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
)

// SocketAttachTypes are the cgroup attach points assay's network programs
// use.
var SocketAttachTypes = []ebpf.AttachType{
	ebpf.AttachCGroupInet4Connect,
	ebpf.AttachCGroupInet6Connect,
	ebpf.AttachCGroupUDP4Sendmsg,
	ebpf.AttachCGroupUDP6Sendmsg,
}

// CgroupPrograms returns, for each of SocketAttachTypes, the ids of the
// programs attached directly to the cgroup (BPF_PROG_QUERY, not the
// effective set inherited from ancestors).
func CgroupPrograms(t testing.TB, s cgroup.Scope) map[ebpf.AttachType][]ebpf.ProgramID {
	t.Helper()
	f, err := s.Open()
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[ebpf.AttachType][]ebpf.ProgramID{}
	for _, typ := range SocketAttachTypes {
		res, err := link.QueryPrograms(link.QueryOptions{Target: int(f.Fd()), Attach: typ})
		if err != nil {
			t.Fatalf("query %v programs on %s: %v", typ, s.Path, err)
		}
		for _, p := range res.Programs {
			out[typ] = append(out[typ], p.ID)
		}
	}
	return out
}

// RequireProgramCount fails the test unless exactly n programs are attached
// to the cgroup at each of SocketAttachTypes. Program detach on link close
// is synchronous, but the check retries for up to a second so that a
// process still being torn down does not make it flaky.
func RequireProgramCount(t testing.TB, s cgroup.Scope, n int) {
	t.Helper()
	deadline := time.Now().Add(time.Second)
	for {
		progs := CgroupPrograms(t, s)
		ok := true
		for _, typ := range SocketAttachTypes {
			ok = ok && len(progs[typ]) == n
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: want %d programs at each socket attach point, have %v", s.Path, n, progs)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// RequireDetached fails the test if any program is attached to the cgroup
// at a socket attach point.
func RequireDetached(t testing.TB, s cgroup.Scope) {
	t.Helper()
	RequireProgramCount(t, s, 0)
}
