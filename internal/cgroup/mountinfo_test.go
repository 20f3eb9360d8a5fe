package cgroup

import (
	"os"
	"strings"
	"testing"
)

func TestParseMountInfo(t *testing.T) {
	in := `27 1 254:0 / / rw,relatime - ext4 /dev/vda rw,discard
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime shared:9 master:2 - cgroup2 cgroup2 rw
50 27 0:50 /sub\040dir /mnt/my\040cg\134x\011y rw - cgroup2 none rw,nsdelegate
`
	got, err := parseMountInfo(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 {
		t.Fatalf("got %d entries, want 3", len(got))
	}
	want := []mountEntry{
		{Major: 254, Minor: 0, Root: "/", MountPoint: "/", FSType: "ext4", Source: "/dev/vda"},
		{Major: 0, Minor: 38, Root: "/", MountPoint: "/sys/fs/cgroup/unified", FSType: "cgroup2", Source: "cgroup2"},
		{Major: 0, Minor: 50, Root: "/sub dir", MountPoint: "/mnt/my cg\\x\ty", FSType: "cgroup2", Source: "none"},
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("entry %d = %+v, want %+v", i, got[i], want[i])
		}
	}
}

func TestParseMountInfoMalformed(t *testing.T) {
	for _, in := range []string{
		"27 1 254:0 / / rw - ext4\n",                     // too few fields
		"27 1 254:0 / / rw a b c d e\n",                  // no separator
		"27 1 2540 / / rw,relatime - ext4 /dev/vda rw\n", // bad dev
	} {
		if _, err := parseMountInfo(strings.NewReader(in)); err == nil {
			t.Errorf("parseMountInfo(%q) succeeded, want error", in)
		}
	}
}

func TestUnescapeOctal(t *testing.T) {
	for in, want := range map[string]string{
		`/plain`:       "/plain",
		`/a\040b`:      "/a b",
		`/a\134b`:      `/a\b`,
		`/trailing\04`: `/trailing\04`,
		`/not\08x`:     `/not\08x`,
		`\040\011\012`: " \t\n",
	} {
		if got := unescapeOctal(in); got != want {
			t.Errorf("unescapeOctal(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestNoMount(t *testing.T) {
	old := mountInfoPath
	t.Cleanup(func() { mountInfoPath = old })
	f := t.TempDir() + "/mountinfo"
	if err := os.WriteFile(f, []byte("27 1 254:0 / / rw,relatime - ext4 /dev/vda rw\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	mountInfoPath = f
	_, err := Mount()
	if err != ErrNoMount {
		t.Fatalf("Mount() error = %v, want ErrNoMount", err)
	}
	const want = "no cgroup v2 mount found in /proc/self/mountinfo: mount one with `mount -t cgroup2 none /sys/fs/cgroup`"
	if err.Error() != want {
		t.Errorf("error text = %q, want %q", err, want)
	}
}
