package run_test

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/assaymcp/assay/internal/assaytest"
	"golang.org/x/sys/unix"
)

// helperV2 runs the helper modes of the version 2 tests; ok is false for
// other modes.
func helperV2(mode string, args []string) (status int, ok bool) {
	switch mode {
	case "fsops": // OP:PATH ...: print "OP:PATH RESULT"; see fsOp
		for _, a := range args {
			op, p, _ := strings.Cut(a, ":")
			fmt.Printf("%s %s\n", a, errName(fsOp(op, p)))
		}
		return 0, true
	case "dns": // see helperDNS
		return helperDNS(args), true
	case "net2": // PROTO:ADDR:PORT ...: connect (tcp) or sendto (udp), print "ARG RESULT"
		for _, a := range args {
			proto, ap, _ := strings.Cut(a, ":")
			fmt.Printf("%s %s\n", a, errName(netTry(proto, ap)))
		}
		return 0, true
	}
	return 0, false
}

// netTry connects a TCP socket or sends one UDP datagram (unconnected:
// the sendmsg path) to ap, with an AF_INET socket for IPv4 addresses and
// an AF_INET6 one otherwise (IPv4-mapped addresses included).
func netTry(proto, ap string) error {
	dst, err := netip.ParseAddrPort(ap)
	if err != nil {
		return err
	}
	family := unix.AF_INET6
	var sa unix.Sockaddr = &unix.SockaddrInet6{Port: int(dst.Port()), Addr: dst.Addr().As16()}
	if dst.Addr().Is4() {
		family = unix.AF_INET
		sa = &unix.SockaddrInet4{Port: int(dst.Port()), Addr: dst.Addr().As4()}
	}
	typ := unix.SOCK_STREAM
	if proto == "udp" {
		typ = unix.SOCK_DGRAM
	}
	fd, err := unix.Socket(family, typ|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	if proto == "udp" {
		return unix.Sendto(fd, []byte("assay v2 test"), 0, sa)
	}
	return unix.Connect(fd, sa)
}

func freePort(t *testing.T, network, addr string) (uint16, func()) {
	t.Helper()
	if strings.HasPrefix(network, "udp") {
		c, err := net.ListenPacket(network, addr)
		if err != nil {
			t.Fatal(err)
		}
		return uint16(c.LocalAddr().(*net.UDPAddr).Port), func() { c.Close() }
	}
	l, err := net.Listen(network, addr)
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	return uint16(l.Addr().(*net.TCPAddr).Port), func() { l.Close() }
}

// TestRunNetworkV2 runs a version 2 network section with real sockets on
// loopback: allow entries with ports and protocols, a deny entry that wins
// over an allow entry, default deny; TCP and UDP, IPv4 and IPv6, and an
// IPv4-mapped destination on an IPv6 socket (judged as IPv4).
func TestRunNetworkV2(t *testing.T) {
	e := newEnv(t)
	a, closeA := freePort(t, "tcp4", "127.0.0.1:0")
	defer closeA()
	b, closeB := freePort(t, "tcp6", "[::1]:0")
	defer closeB()
	c, closeC := freePort(t, "udp4", "127.0.0.1:0")
	defer closeC()
	d, closeD := freePort(t, "udp6", "[::1]:0")
	defer closeD()
	x, closeX := freePort(t, "tcp4", "127.0.0.1:0")
	defer closeX()
	u, closeU := freePort(t, "tcp4", "127.0.0.1:0") // listened on, never allowed
	defer closeU()
	pol := e.policy(fmt.Sprintf(`version: 2
network:
  default: deny
  allow:
    - {cidr: 127.0.0.0/8, ports: [%d], proto: tcp, id: 20}
    - {cidr: "::1", ports: [%d, %d], id: 21}
    - {ports: [%d], proto: udp, id: 22}
    - {cidr: 127.0.0.1, port: %d, id: 23}
  deny:
    - {cidr: 127.0.0.0/8, port: %d, proto: tcp, id: 30}
`, a, b, d, c, x, x))
	cases := []struct {
		try    string
		result string
		rule   string // the rule id reported for a block
		noLine bool   // the event names another destination (unspecified addresses)
	}{
		{fmt.Sprintf("tcp:127.0.0.1:%d", a), "ok", "", false},
		{fmt.Sprintf("udp:127.0.0.1:%d", a), "EPERM", "1000000", false}, // proto mismatch: default
		{fmt.Sprintf("tcp:[::ffff:127.0.0.1]:%d", a), "ok", "", false},  // mapped: judged as IPv4
		{fmt.Sprintf("tcp:[::1]:%d", a), "EPERM", "1000000", false},     // the prefix is IPv4 only
		{fmt.Sprintf("tcp:[::1]:%d", b), "ok", "", false},
		{fmt.Sprintf("udp:[::1]:%d", d), "ok", "", false},
		{fmt.Sprintf("udp:[::1]:%d", b), "ok", "", false}, // both protocols
		{fmt.Sprintf("udp:127.0.0.1:%d", c), "ok", "", false},
		{fmt.Sprintf("udp:[::1]:%d", c), "ok", "", false},               // any address
		{fmt.Sprintf("tcp:127.0.0.1:%d", c), "EPERM", "1000000", false}, // entry 22 is UDP only
		{fmt.Sprintf("tcp:127.0.0.1:%d", x), "EPERM", "30", false},      // deny wins over allow 23
		{fmt.Sprintf("udp:127.0.0.1:%d", x), "ok", "", false},           // the deny entry is TCP only
		{fmt.Sprintf("tcp:127.0.0.1:%d", u), "EPERM", "1000000", false}, // no entry: default deny
		{fmt.Sprintf("udp:[::1]:%d", u), "EPERM", "1000000", false},
		// Unspecified destinations are judged as the loopback address
		// the kernel turns them into.
		{fmt.Sprintf("tcp:0.0.0.0:%d", a), "ok", "", false},
		{fmt.Sprintf("tcp:[::]:%d", b), "ok", "", false},
		{fmt.Sprintf("tcp:0.0.0.0:%d", u), "EPERM", "1000000", true},
	}
	args := []string{"--policy", pol, "--", "@", "net2"}
	var want strings.Builder
	for _, tc := range cases {
		args = append(args, tc.try)
		fmt.Fprintf(&want, "%s %s\n", tc.try, tc.result)
	}
	r := e.run(nil, args...)
	if r.status != 0 || r.stdout != want.String() {
		t.Fatalf("status %d, stdout:\n%s\nwant:\n%s\nstderr:\n%s", r.status, r.stdout, want.String(), r.stderr)
	}
	blocks := 0
	for _, tc := range cases {
		if tc.rule == "" {
			continue
		}
		blocks++
		if tc.noLine {
			continue
		}
		proto, ap, _ := strings.Cut(tc.try, ":")
		kind := "CONNECT"
		if proto == "udp" {
			kind = "SENDMSG"
		}
		dst := netip.MustParseAddrPort(ap)
		re := fmt.Sprintf(`BLOCKED %s: dst=%s proto=%s cgroup=\d+ rule_id=%s `, kind, regexp.QuoteMeta(dst.String()), proto, tc.rule)
		if !regexp.MustCompile(re).MatchString(r.stderr) {
			t.Errorf("stderr lacks %s:\n%s", re, r.stderr)
		}
	}
	if !regexp.MustCompile(fmt.Sprintf(`Socket ringbuf: emitted=%d dropped=0`, blocks)).MatchString(r.stderr) {
		t.Errorf("want %d socket events:\n%s", blocks, r.stderr)
	}
	for _, re := range []string{
		`(?m)^assay:   rule 20\s+net_allow\s+127\.0\.0\.0/8 port \d+ tcp\s+cgroup-bpf$`,
		`(?m)^assay:   rule 30\s+net_deny\s+127\.0\.0\.0/8 port \d+ tcp\s+cgroup-bpf$`,
		`(?m)^assay:   rule 1000000\s+network_default\s+.*cgroup-bpf$`,
	} {
		if !regexp.MustCompile(re).MatchString(r.stderr) {
			t.Errorf("report lacks %s:\n%s", re, r.stderr)
		}
	}
}

// fsOp runs one file operation on p with plain system calls.
func fsOp(op, p string) error {
	switch op {
	case "read":
		fd, err := unix.Open(p, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err == nil {
			unix.Close(fd)
		}
		return err
	case "write":
		fd, err := unix.Open(p, unix.O_WRONLY|unix.O_APPEND|unix.O_CLOEXEC, 0)
		if err == nil {
			_, err = unix.Write(fd, []byte("w"))
			unix.Close(fd)
		}
		return err
	case "create":
		fd, err := unix.Open(p, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_CLOEXEC, 0o644)
		if err == nil {
			unix.Close(fd)
		}
		return err
	case "mkdir":
		return unix.Mkdir(p, 0o755)
	case "delete":
		return unix.Unlink(p)
	case "rename":
		return unix.Rename(p, p+".moved")
	case "truncate":
		return unix.Truncate(p, 0)
	case "chmod":
		return unix.Chmod(p, 0o640)
	case "list":
		fd, err := unix.Open(p, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err == nil {
			_, err = unix.Getdents(fd, make([]byte, 4096))
			unix.Close(fd)
		}
		return err
	case "exec":
		err := exec.Command(p).Run()
		var errno unix.Errno
		if errors.As(err, &errno) {
			return errno
		}
		return err
	case "uconnect": // connect to a Unix socket at p
		fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		return unix.Connect(fd, &unix.SockaddrUnix{Name: p})
	case "mmapx": // map a file for execution
		fd, err := unix.Open(p, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		b, err := unix.Mmap(fd, 0, 4096, unix.PROT_READ|unix.PROT_EXEC, unix.MAP_PRIVATE)
		if err == nil {
			unix.Munmap(b)
		}
		return err
	}
	return fmt.Errorf("unknown op %s", op)
}

// fsTree makes a directory tree owned by the command's user (nobody),
// each file holding a copy of an executable.
func fsTree(t *testing.T, files ...string) string {
	t.Helper()
	root, err := os.MkdirTemp("", "assay-v2-files-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(root) })
	exe, err := os.ReadFile("/usr/bin/true")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		p := filepath.Join(root, f)
		if strings.HasSuffix(f, "/") {
			os.MkdirAll(p, 0o755)
			continue
		}
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, exe, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	err = filepath.Walk(root, func(p string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, 65534, 65534)
	})
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(root, 0o755)
	return root
}

// TestRunFilesV2Landlock is the file table of version 2 with Landlock on
// the host (no BPF LSM here): every operation in an r, rw and rx tree, a
// denied file in a readable tree, a read-only file in an rx tree, an
// allowed directory inside a denied one, paths outside every rule under
// default deny; the command runs as nobody and owns the files, so every
// refusal here is Landlock's (EACCES), not the file modes'.
func TestRunFilesV2Landlock(t *testing.T) {
	e := newEnv(t)
	if lsmWorks() {
		t.Skip("BPF LSM works here; this is the Landlock table")
	}
	T := fsTree(t, "r/f", "r/secret", "r/sub/g", "rw/f", "rw/sub/g", "rx/f", "rx/ronly", "denied/f", "denied/open/f", "outside/f")
	pol := e.policy(fmt.Sprintf(`version: 2
files:
  default: deny
  allow:
    - {path: %[1]s/r/, access: r, id: 1}
    - {path: %[1]s/rw/, access: rw, id: 2}
    - {path: %[1]s/rx/, access: rx, id: 3}
    - {path: %[1]s/rx/ronly, access: r, id: 4}
    - {path: %[1]s/denied/open/, access: rw, id: 5}
    - {path: %[2]s/, access: rx, id: 6}
  deny:
    - {path: %[1]s/r/secret, id: 7}
    - {path: %[1]s/denied/, id: 8}
`, T, filepath.Dir(helperBin)))
	type row struct{ op, path, want string }
	rows := []row{
		// r tree
		{"read", "r/f", "ok"}, {"list", "r", "ok"}, {"read", "r/sub/g", "ok"},
		{"write", "r/f", "EACCES"}, {"create", "r/new", "EACCES"}, {"mkdir", "r/newdir", "EACCES"},
		{"delete", "r/sub/g", "EACCES"}, {"rename", "r/f", "EACCES"}, {"truncate", "r/f", "EACCES"},
		{"exec", "r/f", "EACCES"},
		{"chmod", "r/f", "ok"}, // not controlled by Landlock (reported)
		{"mmapx", "r/f", "ok"}, // not controlled by Landlock (reported)
		// a denied file in the r tree
		{"read", "r/secret", "EACCES"}, {"exec", "r/secret", "EACCES"}, {"write", "r/secret", "EACCES"},
		// rw tree
		{"read", "rw/f", "ok"}, {"write", "rw/f", "ok"}, {"create", "rw/new", "ok"}, {"mkdir", "rw/newdir", "ok"},
		{"read", "rw/new", "ok"}, {"truncate", "rw/f", "ok"}, {"rename", "rw/sub/g", "ok"}, {"delete", "rw/new", "ok"},
		{"chmod", "rw/f", "ok"}, {"list", "rw", "ok"},
		{"exec", "rw/f", "EACCES"},
		{"mmapx", "rw/f", "ok"}, // not controlled by Landlock (reported)
		// rx tree
		{"read", "rx/f", "ok"}, {"exec", "rx/f", "ok"}, {"mmapx", "rx/f", "ok"},
		{"write", "rx/f", "EACCES"}, {"create", "rx/new", "EACCES"}, {"delete", "rx/f", "EACCES"},
		{"rename", "rx/f", "EACCES"}, {"truncate", "rx/f", "EACCES"},
		{"chmod", "rx/f", "ok"}, // not controlled by Landlock (reported)
		// a read-only file in the rx tree
		{"read", "rx/ronly", "ok"}, {"exec", "rx/ronly", "EACCES"},
		// an allowed directory inside a denied one
		{"read", "denied/open/f", "ok"}, {"write", "denied/open/f", "ok"}, {"create", "denied/open/new", "ok"},
		{"read", "denied/f", "EACCES"}, {"list", "denied", "EACCES"}, {"create", "denied/new", "EACCES"},
		// outside every rule: default deny
		{"read", "outside/f", "EACCES"}, {"list", "outside", "EACCES"}, {"create", "outside/new", "EACCES"},
		{"exec", "outside/f", "EACCES"}, {"write", "outside/f", "EACCES"}, {"delete", "outside/f", "EACCES"},
		{"rename", "outside/f", "EACCES"}, {"truncate", "outside/f", "EACCES"}, {"mmapx", "outside/f", "EACCES"},
		{"chmod", "outside/f", "ok"}, // not controlled by Landlock (reported)
		// not controlled by Landlock before ABI 9 (reported): a Unix
		// socket outside every rule
		{"uconnect", "outside/sock", "ok"},
	}
	ln, err := net.Listen("unix", filepath.Join(T, "outside/sock"))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	os.Chmod(filepath.Join(T, "outside/sock"), 0o777)
	args := []string{"--policy", pol, "--", "@", "fsops"}
	var want strings.Builder
	for _, r := range rows {
		a := r.op + ":" + filepath.Join(T, r.path)
		args = append(args, a)
		fmt.Fprintf(&want, "%s %s\n", a, r.want)
	}
	res := e.run(nil, args...)
	if res.status != 0 || res.stdout != want.String() {
		t.Fatalf("status %d, stdout:\n%s\nwant:\n%s\nstderr:\n%s", res.status, res.stdout, want.String(), res.stderr)
	}
	// Landlock's refusals of opens are events, judged in user space from
	// the traced opens: the path, the operation and the deciding rule.
	for _, ev := range []struct {
		path string
		rule string
	}{{"r/secret", "7"}, {"r/f", "1"}, {"denied/f", "8"}, {"outside/f", "1000002"}, {"outside/new", "1000002"}} {
		re := `BLOCKED FILE: dev=0 ino=0 cgroup=\d+ rule_id=` + ev.rule + ` op=open path=` + regexp.QuoteMeta(filepath.Join(T, ev.path)) + ` `
		if !regexp.MustCompile(re).MatchString(res.stderr) {
			t.Errorf("stderr lacks %s:\n%s", re, res.stderr)
		}
	}
	for _, re := range []string{
		`(?m)^assay:   rule 7\s+deny_path\s+\S+/r/secret\s+landlock: BPF LSM unavailable`,
		`(?m)^assay:   rule 4\s+allow_path\s+\S+/rx/ronly \(r\)\s+landlock`,
		`(?m)^assay:   rule 1000002\s+files_default\s+.*landlock`,
		`(?m)^assay: landlock: not controlled: chmod`,
		`(?m)^assay: landlock: ABI \d: connecting to a Unix socket at a path is not controlled`,
	} {
		if !regexp.MustCompile(re).MatchString(res.stderr) {
			t.Errorf("report lacks %s:\n%s", re, res.stderr)
		}
	}
}

// TestRunFilesV2DefaultAllow: files.default: allow with Landlock. Landlock
// cannot take rights away inside a tree it grants (here /): an r tree under
// default allow is NOT ENFORCED, and the command does not start; with
// --allow-degraded everything outside the rules is allowed, and so is
// writing in the r tree (the rule is not there). (BPF LSM enforces it: the
// guest's TestPolicyV2Files.)
func TestRunFilesV2DefaultAllow(t *testing.T) {
	e := newEnv(t)
	if lsmWorks() {
		t.Skip("BPF LSM works here; this is the Landlock table")
	}
	T := fsTree(t, "r/f", "outside/f", "outside/g")
	pol := e.policy(fmt.Sprintf(`version: 2
files:
  default: allow
  allow:
    - {path: %[1]s/r/, access: r, id: 1}
`, T))
	re := regexp.MustCompile(`(?m)^assay:   rule 1\s+allow_path\s+\S+/r/ \(r\)\s+NOT ENFORCED: Landlock cannot take rights away inside a writable tree`)
	res := e.run(nil, "--policy", pol, "--", "@", "fsops", "read:"+T+"/r/f")
	if res.status != 125 || res.stdout != "" || !re.MatchString(res.stderr) || !strings.Contains(res.stderr, "--allow-degraded") {
		t.Fatalf("status %d (want 125), stdout %q, stderr (want %s):\n%s", res.status, res.stdout, re, res.stderr)
	}
	rows := []struct{ op, path, want string }{
		{"read", "outside/f", "ok"}, {"write", "outside/f", "ok"}, {"create", "outside/new", "ok"},
		{"mkdir", "outside/newdir", "ok"}, {"exec", "outside/f", "ok"}, {"mmapx", "outside/f", "ok"},
		{"truncate", "outside/f", "ok"}, {"chmod", "outside/f", "ok"}, // (0640: last)
		{"rename", "outside/g", "ok"}, {"delete", "outside/new", "ok"}, {"list", "outside", "ok"},
		{"read", "r/f", "ok"}, {"write", "r/f", "ok"}, // the NOT ENFORCED rule
	}
	args := []string{"--policy", pol, "--allow-degraded", "--", "@", "fsops"}
	var want strings.Builder
	for _, r := range rows {
		a := r.op + ":" + filepath.Join(T, r.path)
		args = append(args, a)
		fmt.Fprintf(&want, "%s %s\n", a, r.want)
	}
	res = e.run(nil, args...)
	if res.status != 0 || res.stdout != want.String() {
		t.Fatalf("--allow-degraded: status %d, stdout:\n%s\nwant:\n%s\nstderr:\n%s", res.status, res.stdout, want.String(), res.stderr)
	}
}

// TestRunFilesV2NotExact: a rule Landlock cannot enforce exactly is NOT
// ENFORCED, the command does not start, and with --allow-degraded it runs
// without it; a parent directory is never made read-only instead.
func TestRunFilesV2NotExact(t *testing.T) {
	e := newEnv(t)
	if lsmWorks() {
		t.Skip("BPF LSM works here; this is the Landlock table")
	}
	T := fsTree(t, "rw/f", "rw/.env", "r/dir/f", "other/f")
	for _, tc := range []struct {
		name, policy, rule, reason string
		ops                        []string // op:path, want with --allow-degraded
	}{
		{"denied file in a writable tree", fmt.Sprintf(`version: 2
files:
  default: deny
  allow: [{path: %[1]s/rw/, access: rw, id: 1}, {path: %[2]s/, access: rx, id: 2}]
  deny: [{path: %[1]s/rw/.env, id: 3}]
`, T, filepath.Dir(helperBin)), "3", "inside a writable tree", []string{"read:rw/.env ok", "create:rw/new ok", "write:rw/f ok"}},
		{"denied directory in a readable tree", fmt.Sprintf(`version: 2
files:
  default: deny
  allow: [{path: %[1]s/r/, access: r, id: 1}, {path: %[2]s/, access: rx, id: 2}]
  deny: [{path: %[1]s/r/dir/, id: 3}]
`, T, filepath.Dir(helperBin)), "3", "listed", []string{"read:r/dir/f ok", "list:r ok"}},
		{"default allow with a deny", fmt.Sprintf(`version: 2
files:
  default: allow
  deny: [{path: %[1]s/other/, id: 3}]
`, T), "3", "inside a writable tree", []string{"read:other/f ok", "create:rw/new2 ok"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pol := e.policy(tc.policy)
			re := regexp.MustCompile(`(?m)^assay:   rule ` + tc.rule + `\s+deny_path\s+\S+\s+NOT ENFORCED: .*` + regexp.QuoteMeta(tc.reason))
			res := e.run(nil, "--policy", pol, "--", "@", "fsops", "read:"+T+"/rw/f")
			if res.status != 125 || res.stdout != "" || !re.MatchString(res.stderr) || !strings.Contains(res.stderr, "--allow-degraded") {
				t.Fatalf("status %d (want 125), stdout %q, stderr (want %s):\n%s", res.status, res.stdout, re, res.stderr)
			}
			args := []string{"--policy", pol, "--allow-degraded", "--", "@", "fsops"}
			var want strings.Builder
			for _, o := range tc.ops {
				op, w, _ := strings.Cut(o, " ")
				kind, p, _ := strings.Cut(op, ":")
				a := kind + ":" + filepath.Join(T, p)
				args = append(args, a)
				fmt.Fprintf(&want, "%s %s\n", a, w)
			}
			res = e.run(nil, args...)
			if res.status != 0 || res.stdout != want.String() {
				t.Fatalf("--allow-degraded: status %d, stdout:\n%s\nwant:\n%s\nstderr:\n%s", res.status, res.stdout, want.String(), res.stderr)
			}
		})
	}
}

// TestRunBaselineRuntime starts node, python and a Go program under default
// deny with the runtime baseline alone (and the helper's directory), with no
// BLOCKED FILE event from their start, and shows that the baseline is not
// the whole machine.
func TestRunBaselineRuntime(t *testing.T) {
	e := newEnv(t)
	if lsmWorks() {
		t.Skip("BPF LSM works here; this is the Landlock table")
	}
	// assay itself is the Go program: its runtime reads its cgroup's CPU
	// quota and the huge page size at start.
	goBin := assaytest.Binary(t)
	pol := e.policy(fmt.Sprintf("version: 2\nfiles:\n  default: deny\n  allow: [{path: %s/, access: rx}, {path: %s, access: rx}]\n", filepath.Dir(helperBin), goBin))
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatal("node is needed (scripts/install-deps.sh)")
	}
	python := "/usr/bin/python3"
	if _, err := os.Stat(python); err != nil {
		t.Fatal("python3 is needed at /usr/bin/python3 (scripts/install-deps.sh)")
	}
	for _, c := range []struct {
		argv []string
		want string
	}{
		{[]string{node, "-e", `const os = require("os"); console.log("node", os.cpus().length > 0, require("crypto").randomBytes(4).length, Intl.DateTimeFormat().resolvedOptions().timeZone.length > 0)`}, "node true 4 true\n"},
		{[]string{python, "-I", "-c", `import os, ssl, json, locale; print("python", len(os.urandom(4)), ssl.OPENSSL_VERSION[:7])`}, "python 4 OpenSSL\n"},
		{[]string{goBin, "policy", "baseline"}, ""},
		{[]string{python, "-c", `
import os
for p in ["/etc/shadow", "/root", "/tmp", "/home"]:
    try:
        os.listdir(p) if os.path.isdir(p) else open(p).read()
        print(p, "ok")
    except PermissionError:
        print(p, "EACCES")
`}, "/etc/shadow EACCES\n/root EACCES\n/tmp EACCES\n/home EACCES\n"},
	} {
		args := append([]string{"--policy", pol, "--"}, c.argv...)
		res := e.run(nil, args...)
		if c.want == "" { // the Go program: its output is the baseline table
			if res.status != 0 || !strings.Contains(res.stdout, "/sys/fs/cgroup/") {
				t.Errorf("%s: status %d, stdout %q\nstderr:\n%s", c.argv[0], res.status, res.stdout, res.stderr)
			}
		} else if res.status != 0 || res.stdout != c.want {
			t.Errorf("%s: status %d, stdout %q, want %q\nstderr:\n%s", c.argv[0], res.status, res.stdout, c.want, res.stderr)
		}
		// What the runtime reads at every start is in the baseline: a
		// start of node, python or a Go program under default deny is not
		// reported as refused (the third case refuses on purpose; python
		// runs isolated, -I, so that it does not look into the test's
		// working directory, which is outside the policy).
		if !strings.Contains(strings.Join(c.argv, " "), "/etc/shadow") {
			for _, l := range strings.Split(res.stderr, "\n") {
				if strings.Contains(l, "🛡️ BLOCKED FILE") {
					t.Errorf("%s: a start under the baseline was refused: %s", c.argv[0], l)
				}
			}
		}
	}
}

// TestRunFilesV2Audit: audit mode without BPF LSM: nothing is blocked, and
// the traced opens the policy would refuse are reported as audit events
// (observation only, said so in the report).
func TestRunFilesV2Audit(t *testing.T) {
	e := newEnv(t)
	if lsmWorks() {
		t.Skip("BPF LSM works here; this is the user-space audit")
	}
	T := fsTree(t, "r/f", "outside/f")
	pol := e.policy(fmt.Sprintf(`version: 2
mode: audit
files:
  default: deny
  allow:
    - {path: %[1]s/r/, access: r, id: 1}
    - {path: %[2]s/, access: rx, id: 2}
`, T, filepath.Dir(helperBin)))
	res := e.run(nil, "--policy", pol, "--", "@", "fsops", "read:"+T+"/r/f", "write:"+T+"/r/f", "read:"+T+"/outside/f")
	want := fmt.Sprintf("read:%[1]s/r/f ok\nwrite:%[1]s/r/f ok\nread:%[1]s/outside/f ok\n", T)
	if res.status != 0 || res.stdout != want {
		t.Fatalf("status %d, stdout:\n%s\nwant:\n%s\nstderr:\n%s", res.status, res.stdout, want, res.stderr)
	}
	for _, re := range []string{
		`AUDIT FILE: dev=0 ino=0 cgroup=\d+ rule_id=1 op=open path=` + regexp.QuoteMeta(T+"/r/f") + ` `,
		`AUDIT FILE: dev=0 ino=0 cgroup=\d+ rule_id=1000002 op=open path=` + regexp.QuoteMeta(T+"/outside/f") + ` `,
		`(?m)^assay:   rule 1\s+allow_path\s+.*trace-audit \(audit\): audit mode: observation only`,
	} {
		if !regexp.MustCompile(re).MatchString(res.stderr) {
			t.Errorf("stderr lacks %s:\n%s", re, res.stderr)
		}
	}
	if regexp.MustCompile(`AUDIT FILE: .* path=` + regexp.QuoteMeta(T+"/r/f") + ` comm=\S+ tid=\d+\n(?s:.*)AUDIT FILE: .* path=` + regexp.QuoteMeta(T+"/r/f") + ` comm`).MatchString(res.stderr) {
		t.Errorf("the allowed read of r/f was reported too:\n%s", res.stderr)
	}
}
