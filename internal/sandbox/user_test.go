package sandbox

import (
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/assaymcp/assay/internal/assaytest"
)

func fakeDB(t *testing.T) {
	t.Helper()
	dir := t.TempDir()
	pw := filepath.Join(dir, "passwd")
	gr := filepath.Join(dir, "group")
	os.WriteFile(pw, []byte("root:x:0:0:root:/root:/bin/sh\n# comment\nagent:x:1000:1000:A:/home/agent:/bin/sh\nnobody:x:65534:65534:n:/nonexistent:/bin/false\n"), 0o644)
	os.WriteFile(gr, []byte("root:x:0:\nagent:x:1000:\ndocker:x:998:other,agent\naudio:x:29:agent\nnogroup:x:65534:\nstaff:x:50:\n"), 0o644)
	op, og := passwdFile, groupFile
	passwdFile, groupFile = pw, gr
	t.Cleanup(func() { passwdFile, groupFile = op, og })
}

func TestParseUser(t *testing.T) {
	fakeDB(t)
	for spec, want := range map[string]Cred{
		"agent":       {UID: 1000, GID: 1000, Groups: []uint32{998, 29}, Name: "agent", GroupName: "agent", Home: "/home/agent"},
		"1000":        {UID: 1000, GID: 1000, Groups: []uint32{998, 29}, Name: "agent", GroupName: "agent", Home: "/home/agent"},
		"agent:staff": {UID: 1000, GID: 50, Groups: []uint32{998, 29}, Name: "agent", GroupName: "staff", Home: "/home/agent"},
		"4242":        {UID: 4242, GID: 65534, GroupName: "nogroup", Home: "/"},
		"4242:4343":   {UID: 4242, GID: 4343, Home: "/"},
		"root":        {UID: 0, GID: 0, Name: "root", GroupName: "root", Home: "/root"},
	} {
		got, err := ParseUser(spec)
		if err != nil {
			t.Errorf("%s: %v", spec, err)
			continue
		}
		if got.Groups == nil {
			got.Groups = nil
		}
		if len(got.Groups) == 0 && len(want.Groups) == 0 {
			got.Groups, want.Groups = nil, nil
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s: %+v, want %+v", spec, got, want)
		}
	}
	for spec, msg := range map[string]string{
		"ghost":       `no user "ghost"`,
		"agent:ghost": `no group "ghost"`,
		"":            "give USER or USER:GROUP",
		"agent:":      "give USER or USER:GROUP",
		"4294967295":  `no user "4294967295"`,
	} {
		if _, err := ParseUser(spec); err == nil || !strings.Contains(err.Error(), msg) {
			t.Errorf("%q: %v, want %q", spec, err, msg)
		}
	}
}

func TestDefaultUser(t *testing.T) {
	assaytest.Privileged(t) // the default depends on running as root
	fakeDB(t)
	env := func(m map[string]string) func(string) string { return func(k string) string { return m[k] } }
	c, note, err := DefaultUser(env(map[string]string{"SUDO_UID": "1000", "SUDO_GID": "1000"}))
	if err != nil || note != "" || c.UID != 1000 || c.Name != "agent" || len(c.Groups) != 2 {
		t.Errorf("sudo: %+v %q %v", c, note, err)
	}
	c, _, err = DefaultUser(env(map[string]string{"PKEXEC_UID": "1000"}))
	if err != nil || c.UID != 1000 || c.GID != 1000 {
		t.Errorf("pkexec: %+v %v", c, err)
	}
	c, note, err = DefaultUser(env(nil))
	if err != nil || c.UID != 65534 || c.GID != 65534 || !strings.Contains(note, "nobody:nogroup") {
		t.Errorf("root alone: %+v %q %v", c, note, err)
	}
	if _, _, err := DefaultUser(env(map[string]string{"SUDO_UID": "x"})); err == nil {
		t.Errorf("a bad SUDO_UID was accepted")
	}
}

func TestWithIdentity(t *testing.T) {
	got := withIdentity([]string{"PATH=/bin", "HOME=/root", "USER=root", "LOGNAME=root", "X=1"}, Cred{UID: 4242, Home: "/"})
	want := []string{"PATH=/bin", "X=1", "HOME=/"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("%q, want %q", got, want)
	}
	got = withIdentity([]string{"HOME=/root", "USER=root"}, Cred{Name: "agent", Home: "/home/agent"})
	want = []string{"HOME=/home/agent", "USER=agent", "LOGNAME=agent"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("%q, want %q", got, want)
	}
}

func TestParseCap(t *testing.T) {
	for s, want := range map[string]int{"net_bind_service": 10, "CAP_NET_RAW": 13, "sys_admin": 21, "checkpoint_restore": 40} {
		if c, err := ParseCap(s); err != nil || c != want {
			t.Errorf("%s: %d %v", s, c, err)
		}
	}
	if _, err := ParseCap("fly"); err == nil {
		t.Error("unknown capability accepted")
	}
	if CapName(10) != "CAP_NET_BIND_SERVICE" {
		t.Error(CapName(10))
	}
}

func TestLimitsCheck(t *testing.T) {
	for _, l := range []Limits{{Memory: -1}, {Memory: 1000}, {Pids: -1}, {CPU: -1}, {CPU: 0.001}} {
		if l.Check() == nil {
			t.Errorf("%+v accepted", l)
		}
	}
	if err := (Limits{Memory: 64 << 20, Pids: 10, CPU: 0.5}).Check(); err != nil {
		t.Error(err)
	}
	if d := (Limits{Pids: 10}).Describe(); len(d) != 1 || d[0] != "limits: 10 processes/threads" {
		t.Errorf("%q", d)
	}
}

// TestLastCap: the highest capability the kernel accepts, asked with
// PR_CAPBSET_READ, is the one /proc/sys/kernel/cap_last_cap names.
func TestLastCap(t *testing.T) {
	data, err := os.ReadFile("/proc/sys/kernel/cap_last_cap")
	if err != nil {
		t.Fatal(err)
	}
	want, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil {
		t.Fatal(err)
	}
	if got := lastCap(); got != want {
		t.Errorf("lastCap() = %d, cap_last_cap = %d", got, want)
	}
}
