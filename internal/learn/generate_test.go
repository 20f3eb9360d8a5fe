package learn

import (
	"math/rand"
	"net/netip"
	"strings"
	"testing"

	"github.com/assaymcp/assay/internal/events"
	"github.com/assaymcp/assay/internal/policy"
	"golang.org/x/sys/unix"
)

func open(p string, flags int) events.Event {
	return events.Event{Kind: events.KindTraceOpen, PID: 10, Ret: 3, Source: events.SourceFile, Flags: uint32(flags), Path: p}
}

func connect(a string, port uint16, proto uint8) events.Event {
	return events.Event{Kind: events.KindConnect, Verdict: events.VerdictAudit, PID: 10, Addr: netip.MustParseAddr(a), Port: port, Protocol: proto}
}

// run is a synthetic run: the command's exec, then evs.
func run(evs ...events.Event) []events.Event {
	return append([]events.Event{
		{Kind: events.KindTraceExec, PID: 10, Source: events.SourceFile, Path: "/opt/assay"}, // the shim
		open("/proc/10/status", unix.O_RDONLY),                                               // the shim's: not learned
		{Kind: events.KindTraceExec, PID: 10, Source: events.SourceFile, Path: "/srv/app/bin/tool"},
	}, evs...)
}

func generate(t *testing.T, evs []events.Event, o Options) (Result, string) {
	t.Helper()
	r := NewRecorder("/opt/assay")
	for _, e := range evs {
		r.Observe(e)
	}
	res, err := Generate(r, o)
	if err != nil {
		t.Fatal(err)
	}
	return res, string(res.Policy)
}

func rules(text string) []string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		if s := strings.TrimSpace(l); strings.HasPrefix(s, "- ") || strings.HasPrefix(s, "# - ") {
			out = append(out, s)
		}
	}
	return out
}

var sample = run(
	// Two entries of /srv/app used: /srv/app/ (with the executable
	// beneath it, x), the union of the letters.
	open("/srv/app/config.json", unix.O_RDONLY),
	open("/srv/app/data/in.txt", unix.O_RDONLY),
	open("/srv/app/data/out.txt", unix.O_WRONLY|unix.O_CREAT),
	// One file in a deep tree: that file only, no widening.
	open("/var/lib/one/deep/state.db", unix.O_RDWR),
	// A listed directory: a subtree rule, r.
	open("/opt/share/icons", unix.O_RDONLY|unix.O_DIRECTORY),
	// Covered by the runtime baseline: not written.
	open("/usr/lib/x86_64-linux-gnu/libc.so.6", unix.O_RDONLY),
	open("/proc/10/status", unix.O_RDONLY),
	// Not learned: failed, O_PATH, not named by the kernel.
	events.Event{Kind: events.KindTraceOpen, PID: 10, Ret: -2, Path: "/nonexistent"},
	open("/srv/elsewhere/p", unix.O_PATH),
	events.Event{Kind: events.KindTraceOpen, PID: 10, Ret: 3, Source: events.SourceFile | events.SourcePartial, Path: "/x/y"},
	// Sensitive: commented out; /home/u is no subtree.
	open("/home/u/.ssh/id_ed25519", unix.O_RDONLY),
	open("/srv/web/.env", unix.O_RDONLY),
	open("/srv/web/index.html", unix.O_RDONLY),
	open("/srv/web/style.css", unix.O_RDONLY),
	// A file created directly in /tmp: /tmp/ rw, a widening noted.
	open("/tmp/tool-1234", unix.O_WRONLY|unix.O_CREAT),
	connect("127.0.0.1", 8080, 6),
	connect("127.0.0.1", 8080, 6),
	connect("127.0.0.1", 8081, 6),
	connect("::1", 53, 17),
	connect("169.254.169.254", 80, 6),
)

func TestGenerate(t *testing.T) {
	res, text := generate(t, sample, Options{Argv: []string{"tool", "--serve"}})
	t.Logf("policy:\n%s", text)
	want := []string{
		"- {path: /opt/share/icons/, access: r}",
		"- {path: /srv/app/, access: rwx}",
		"- {path: /srv/web/index.html, access: r}",
		"- {path: /srv/web/style.css, access: r}",
		"- {path: /tmp/, access: w}",
		"- {path: /var/lib/one/deep/state.db, access: rw}",
		"# - {path: /home/u/.ssh/id_ed25519, access: r}",
		"# - {path: /srv/web/.env, access: r}",
		"- {cidr: 127.0.0.1/32, ports: [8080, 8081], proto: tcp}",
		"# - {cidr: 169.254.169.254/32, ports: [80], proto: tcp}",
		`- {cidr: "::1/128", ports: [53], proto: udp}`,
	}
	if got := rules(text); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("rules:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	for _, c := range []string{
		"# seen: 4 paths, 4 opens (read, write, exec), e.g. /srv/app/bin/tool",
		"# seen: 3 connects",
		"# WARNING sensitive: SSH keys; not allowed unless you uncomment it:",
		"# Written by assay learn from one run of: tool --serve",
	} {
		if !strings.Contains(text, c) {
			t.Errorf("no %q in the policy", c)
		}
	}
	if len(res.Sensitive) != 3 || !strings.HasPrefix(res.Sensitive[0], "/home/u/.ssh/id_ed25519 (SSH keys)") {
		t.Errorf("sensitive %q", res.Sensitive)
	}
	if len(res.Widened) != 1 || !strings.HasPrefix(res.Widened[0], "/tmp/") {
		t.Errorf("widened %q", res.Widened)
	}
	if res.Files != 6 || res.Network != 2 {
		t.Errorf("files %d network %d", res.Files, res.Network)
	}
	p, err := policy.Parse("learned", res.Policy)
	if err != nil {
		t.Fatal(err)
	}
	// What the run did is allowed; what it did not is not.
	for _, c := range []struct {
		path string
		want policy.Access
		ok   bool
	}{
		{"/srv/app/data/out.txt", policy.AccessWrite, true},
		{"/srv/app/bin/tool", policy.AccessExec, true},
		{"/var/lib/one/deep/state.db", policy.AccessRead | policy.AccessWrite, true},
		{"/var/lib/one/deep/other.db", policy.AccessRead, false},
		{"/srv/web/.env", policy.AccessRead, false},
		{"/home/u/.ssh/id_ed25519", policy.AccessRead, false},
		{"/srv/web/secret.txt", policy.AccessRead, false},
		{"/opt/share/icons/a.png", policy.AccessRead, true},
		{"/opt/share/icons/a.png", policy.AccessWrite, false},
	} {
		if got := p.FileAccess(c.path).Access&c.want == c.want; got != c.ok {
			t.Errorf("%s %s: allowed %v, want %v", c.path, c.want, got, c.ok)
		}
	}
	if !p.NetVerdict(netip.MustParseAddr("127.0.0.1"), 8081, policy.ProtoTCP).Allowed ||
		p.NetVerdict(netip.MustParseAddr("127.0.0.1"), 8082, policy.ProtoTCP).Allowed ||
		p.NetVerdict(netip.MustParseAddr("169.254.169.254"), 80, policy.ProtoTCP).Allowed {
		t.Error("network verdicts")
	}
}

// TestDeterministic: the same observations in another order give the same
// bytes.
func TestDeterministic(t *testing.T) {
	_, a := generate(t, sample, Options{Argv: []string{"tool"}})
	for i := 0; i < 20; i++ {
		evs := append([]events.Event(nil), sample[3:]...)
		rand.Shuffle(len(evs), func(i, j int) { evs[i], evs[j] = evs[j], evs[i] })
		if _, b := generate(t, append(append([]events.Event(nil), sample[:3]...), evs...), Options{Argv: []string{"tool"}}); a != b {
			t.Fatalf("different output for a shuffled run:\n%s\nvs\n%s", a, b)
		}
	}
}

// TestBase: with --policy BASE, only what BASE does not allow is added,
// and BASE's own content (comments too) is kept.
func TestBase(t *testing.T) {
	base := "# my policy\nversion: 2\nfiles:\n  default: deny\n  allow:\n    - {path: /srv/app/, access: rwx, id: 7}  # the app\n" +
		"network:\n  default: deny\n  allow:\n    - {cidr: 127.0.0.1/32, ports: [8080], proto: tcp}\nlimits:\n  pids: 64\n"
	bp, err := policy.Parse("base.yaml", []byte(base))
	if err != nil {
		t.Fatal(err)
	}
	_, text := generate(t, sample, Options{Base: bp, BaseText: []byte(base), Argv: []string{"tool"}})
	t.Logf("merged:\n%s", text)
	for _, c := range []string{"# my policy", "# the app", "pids: 64", "id: 7", "learned: "} {
		if !strings.Contains(text, c) {
			t.Errorf("no %q in the merged policy", c)
		}
	}
	if strings.Contains(text, "/srv/app/config.json") || strings.Count(text, "/srv/app/") != 1 {
		t.Errorf("BASE's /srv/app/ covers the run there, yet more was added")
	}
	if !strings.Contains(text, "ports: [8081]") || strings.Contains(text, "ports: [8080, 8081]") {
		t.Errorf("only port 8081 is missing from BASE")
	}
	np, err := policy.Parse("merged", []byte(text))
	if err != nil {
		t.Fatal(err)
	}
	ws, err := policy.Diff(bp, np)
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	for _, w := range ws {
		lines = append(lines, w.String())
	}
	all := strings.Join(lines, "\n")
	t.Logf("diff:\n%s", all)
	for _, c := range []string{"+ files /var/lib/one/deep/state.db: rw (+rw)", "+ files /tmp/: w (+w)", "+ network 127.0.0.1 port 8081 tcp"} {
		if !strings.Contains(all, c) {
			t.Errorf("diff lacks %q", c)
		}
	}
	if strings.Contains(all, "/srv/app") || strings.Contains(all, "8080") {
		t.Errorf("diff lists what BASE allowed already")
	}
	// Nothing new: an empty diff.
	if ws, _ := policy.Diff(np, np); len(ws) != 0 {
		t.Errorf("a policy against itself: %v", ws)
	}
}

// TestNoUnenteredSubtree: two files of a directory used, but a
// subdirectory of it never entered: no subtree rule over it.
func TestNoUnenteredSubtree(t *testing.T) {
	evs := run(open("/srv/data/a", unix.O_RDONLY), open("/srv/data/b", unix.O_RDONLY), open("/srv/data/used/c", unix.O_RDONLY))
	subdirs := func(d string) ([]string, bool) {
		if d == "/srv/data" {
			return []string{"used", "private"}, true
		}
		return nil, true
	}
	_, text := generate(t, evs, Options{Subdirs: subdirs})
	got := strings.Join(rules(text), "\n")
	want := "- {path: /srv/app/bin/tool, access: rx}\n- {path: /srv/data/a, access: r}\n- {path: /srv/data/b, access: r}\n- {path: /srv/data/used/c, access: r}"
	if got != want {
		t.Errorf("rules:\n%s\nwant:\n%s", got, want)
	}
	_, text = generate(t, evs, Options{Subdirs: func(string) ([]string, bool) { return []string{"used"}, true }})
	if got := strings.Join(rules(text), "\n"); !strings.Contains(got, "- {path: /srv/data/, access: r}") {
		t.Errorf("every subdirectory entered: want /srv/data/, got:\n%s", got)
	}
}

// TestUnixConnect: a connect to a Unix socket at a path is w on it (policy
// v2); the container engine's socket is sensitive.
func TestUnixConnect(t *testing.T) {
	unixc := func(p string) events.Event {
		return events.Event{Kind: events.KindTraceUnix, PID: 10, Source: events.SourceFile, Path: p}
	}
	res, text := generate(t, run(unixc("/srv/app/run/app.sock"), unixc("/run/docker.sock")), Options{})
	got := strings.Join(rules(text), "\n")
	want := "- {path: /srv/app/bin/tool, access: rx}\n- {path: /srv/app/run/app.sock, access: w}\n# - {path: /run/docker.sock, access: w}"
	if got != want {
		t.Errorf("rules:\n%s\nwant:\n%s", got, want)
	}
	if len(res.Sensitive) != 1 || !strings.Contains(res.Sensitive[0], "container engine socket") {
		t.Errorf("sensitive %q", res.Sensitive)
	}
}
