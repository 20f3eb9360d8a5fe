package container

import "testing"

func TestParseInspect(t *testing.T) {
	c, err := parseInspect("docker", "abcdef0123456789\t4242\t/mcp-fs\ttrue\n")
	if err != nil || c.PID != 4242 || c.Name != "mcp-fs" || c.ID != "abcdef0123456789" || c.Root() != "/proc/4242/root" {
		t.Fatalf("%+v %v", c, err)
	}
	for _, bad := range []string{
		"abc\t0\tx\tfalse\n",             // stopped
		"abc\tnope\tx\ttrue\n",           // no pid
		"abc\t1\tx\n",                    // short
		"a\t1\tx\ttrue\nb\t2\ty\ttrue\n", // two
	} {
		if _, err := parseInspect("podman", bad); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}
