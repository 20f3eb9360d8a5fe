package run_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
	"golang.org/x/sys/unix"

	"github.com/assaymcp/assay/internal/assaytest"
	"github.com/assaymcp/assay/internal/cgroup"
	"github.com/assaymcp/assay/internal/dns/dnstest"
	"github.com/assaymcp/assay/internal/testenv"
)

// helperDNS runs the "dns" helper mode: each argument is a step, fields
// separated by "|", and prints "STEP RESULT":
//
//	q|udp|SERVER|NAME|TYPE  query SERVER from an unconnected AF_INET6 socket
//	                        (an IPv4 SERVER as ::ffff:a.b.c.d: the mapped
//	                        path); the answer's source is printed as
//	                        from=ADDR: "RCODE ADDR... from=ADDR"
//	q|udp4|SERVER|NAME|TYPE the same from an AF_INET socket
//	q|tcp|SERVER|NAME|TYPE  the same over TCP (no from)
//	c|ADDR                  TCP connect: ok, EPERM, ...
//	gone|ADDR               connect until it fails with EPERM (at most 20 s): EPERM or the last result
//	hold                    print "ready" and wait to be killed
func helperDNS(args []string) int {
	for _, a := range args {
		f := strings.Split(a, "|")
		switch f[0] {
		case "q":
			fmt.Printf("%s %s\n", a, dnsQuery(f[1], f[2], f[3], f[4]))
		case "c":
			fmt.Printf("%s %s\n", a, errName(netTry("tcp", f[1])))
		case "gone":
			var err error
			for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
				if err = netTry("tcp", f[1]); errors.Is(err, unix.EPERM) {
					break
				}
			}
			fmt.Printf("%s %s\n", a, errName(err))
		case "hold":
			fmt.Println("ready")
			time.Sleep(time.Minute)
		default:
			fmt.Fprintln(os.Stderr, "helper dns: unknown step", a)
			return 2
		}
	}
	return 0
}

func dnsQuery(proto, server, name, qtype string) string {
	m := new(mdns.Msg)
	m.SetQuestion(mdns.Fqdn(name), mdns.StringToType[qtype])
	out, err := m.Pack()
	if err != nil {
		return "pack:" + err.Error()
	}
	srv, err := netip.ParseAddrPort(server)
	if err != nil {
		return err.Error()
	}
	var in []byte
	from := ""
	if proto == "udp" || proto == "udp4" {
		c, err := net.ListenUDP(proto, nil)
		if err != nil {
			return errName(err)
		}
		defer c.Close()
		if _, err := c.WriteToUDPAddrPort(out, srv); err != nil {
			return errName(err)
		}
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		buf := make([]byte, 65535)
		n, src, err := c.ReadFromUDPAddrPort(buf)
		if err != nil {
			return errName(err)
		}
		in = buf[:n]
		from = " from=" + netip.AddrPortFrom(src.Addr().Unmap(), src.Port()).String()
	} else {
		c, err := net.DialTimeout("tcp", server, 10*time.Second)
		if err != nil {
			return errName(err)
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		frame := binary.BigEndian.AppendUint16(nil, uint16(len(out)))
		if _, err := c.Write(append(frame, out...)); err != nil {
			return errName(err)
		}
		var l [2]byte
		if _, err := io.ReadFull(c, l[:]); err != nil {
			return errName(err)
		}
		in = make([]byte, binary.BigEndian.Uint16(l[:]))
		if _, err := io.ReadFull(c, in); err != nil {
			return errName(err)
		}
	}
	resp := new(mdns.Msg)
	if err := resp.Unpack(in); err != nil {
		return "unpack:" + err.Error()
	}
	s := mdns.RcodeToString[resp.Rcode]
	for _, rr := range resp.Answer {
		switch v := rr.(type) {
		case *mdns.A:
			s += " " + v.A.String()
		case *mdns.AAAA:
			s += " " + v.AAAA.String()
		}
	}
	return s + from
}

// listen opens a TCP listener on addr (a loopback address, port 0) for
// the connects that must succeed, and returns its port.
func listen(t *testing.T, addr string) uint16 {
	t.Helper()
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return uint16(l.Addr().(*net.TCPAddr).Port)
}

// dnsSetup starts the test upstream (loopback only) and the listeners
// the allowed connects reach, and returns the policy text.
type dnsSetup struct {
	up         *dnstest.Upstream
	pa, pb, p6 uint16 // listened on at 127.0.0.11-14 (pa, pb) and ::1 (p6)
	policy     string
}

func newDNSSetup(t *testing.T) *dnsSetup {
	d := &dnsSetup{}
	d.up = dnstest.Start(t, "127.0.0.1", []string{
		"ok.test. 60 IN A 127.0.0.11",
		"a.b.wild.test. 60 IN A 127.0.0.12",
		"wild.test. 60 IN A 127.0.0.12",
		"alias.test. 60 IN CNAME c.elsewhere.test.",
		"c.elsewhere.test. 60 IN A 127.0.0.13",
		"six.test. 60 IN AAAA ::1",
		"short.test. 1 IN A 127.0.0.14",
		"secret.test. 60 IN A 127.0.0.15",
	})
	d.pa = listen(t, "127.0.0.11:0")
	for _, a := range []string{"127.0.0.12", "127.0.0.13", "127.0.0.14", "127.0.0.15"} {
		l, err := net.Listen("tcp", fmt.Sprintf("%s:%d", a, d.pa))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { l.Close() })
	}
	d.pb = listen(t, "127.0.0.12:0")
	d.p6 = listen(t, "[::1]:0")
	d.policy = fmt.Sprintf(`version: 2
network:
  default: deny
  allow:
    - {host: ok.test, ports: [%[1]d], proto: tcp, id: 30}
    - {host: "*.wild.test", ports: [%[2]d], id: 31}
    - {host: alias.test, ports: [%[1]d], id: 32}
    - {host: six.test, ports: [%[3]d], id: 33}
    - {host: short.test, ports: [%[1]d], id: 34}
dns:
  upstream: ["%[4]s"]
  grace: 0
`, d.pa, d.pb, d.p6, d.up.Addr)
	return d
}

// TestRunDNS: host entries under `assay run`, one sandbox, many probes.
// Every query goes to loopback resolver addresses (127.0.0.53:53,
// 127.0.0.54:53, [::1]:53) that the cgroup programs redirect to assay's
// resolver; the test upstream is on 127.0.0.1 and named in dns.upstream.
func TestRunDNS(t *testing.T) {
	e := newEnv(t)
	d := newDNSSetup(t)
	pa, pb, p6 := d.pa, d.pb, d.p6
	steps := []struct{ step, want string }{
		{fmt.Sprintf("c|127.0.0.11:%d", pa), "EPERM"}, // not learned yet
		{"q|udp|127.0.0.53:53|ok.test|A", "NOERROR 127.0.0.11 from=127.0.0.53:53"},
		{fmt.Sprintf("c|127.0.0.11:%d", pa), "ok"},
		{fmt.Sprintf("c|127.0.0.11:%d", pb), "EPERM"}, // another port
		{"q|udp|127.0.0.53:53|wild.test|A", "NXDOMAIN from=127.0.0.53:53"},
		{"q|udp|127.0.0.54:53|a.b.wild.test|A", "NOERROR 127.0.0.12 from=127.0.0.54:53"}, // any depth; a second resolver address
		{fmt.Sprintf("c|127.0.0.12:%d", pb), "ok"},
		{fmt.Sprintf("c|127.0.0.12:%d", pa), "EPERM"},
		{"q|tcp|127.0.0.54:53|alias.test|A", "NOERROR 127.0.0.13"}, // TCP; a CNAME chain
		{fmt.Sprintf("c|127.0.0.13:%d", pa), "ok"},
		{fmt.Sprintf("c|[::1]:%d", p6), "EPERM"},
		{"q|udp|[::1]:53|six.test|AAAA", "NOERROR ::1 from=[::1]:53"}, // AAAA over IPv6
		{fmt.Sprintf("c|[::1]:%d", p6), "ok"},
		{"q|udp|127.0.0.53:53|secret.test|A", "NXDOMAIN from=127.0.0.53:53"},
		{"q|udp4|127.0.0.53:53|secret.test|AAAA", "NXDOMAIN from=127.0.0.53:53"}, // an AF_INET socket: sendmsg4, recvmsg4
		{fmt.Sprintf("c|127.0.0.15:%d", pa), "EPERM"},                            // an address never learned
		{"q|tcp|127.0.0.53:53|short.test|A", "NOERROR 127.0.0.14"},
		{fmt.Sprintf("c|127.0.0.14:%d", pa), "ok"},
		{fmt.Sprintf("gone|127.0.0.14:%d", pa), "EPERM"}, // TTL 1 s, grace 0: expired
		{fmt.Sprintf("c|127.0.0.11:%d", pa), "ok"},       // TTL 60 s: still there
	}
	args := []string{"--policy", e.policy(d.policy), "--", "@", "dns"}
	var want strings.Builder
	for _, s := range steps {
		args = append(args, s.step)
		fmt.Fprintf(&want, "%s %s\n", s.step, s.want)
	}
	r := e.run(nil, args...)
	if r.status != 0 || r.stdout != want.String() {
		t.Fatalf("status %d, stdout:\n%s\nwant:\n%s\nstderr:\n%s", r.status, r.stdout, want.String(), r.stderr)
	}
	for _, n := range []string{"secret.test", "wild.test"} {
		if d.up.WasAsked(n) {
			t.Errorf("%s, not allowed, reached the upstream: %v", n, d.up.Asked())
		}
	}
	for _, re := range []string{
		`BLOCKED DNS: query=secret\.test qtype=A cgroup=\d+ rule_id=1000005`,
		`BLOCKED DNS: query=secret\.test qtype=AAAA cgroup=\d+ rule_id=1000005`,
		`BLOCKED DNS: query=wild\.test qtype=A cgroup=\d+ rule_id=1000005`,
		fmt.Sprintf(`BLOCKED CONNECT: dst=127\.0\.0\.11:%d proto=tcp cgroup=\d+ rule_id=1000000`, pb),
		fmt.Sprintf(`BLOCKED CONNECT: dst=127\.0\.0\.15:%d proto=tcp cgroup=\d+ rule_id=1000000`, pa),
		fmt.Sprintf(`BLOCKED CONNECT: dst=\[::1\]:%d proto=tcp cgroup=\d+ rule_id=1000000`, p6),
	} {
		if !regexp.MustCompile(re).MatchString(r.stderr) {
			t.Errorf("stderr lacks %s:\n%s", re, r.stderr)
		}
	}
}

// TestRunDNSAudit: in audit mode every query is answered (the name not
// allowed too, reported as AUDIT DNS) and every connection passes.
func TestRunDNSAudit(t *testing.T) {
	e := newEnv(t)
	d := newDNSSetup(t)
	steps := []struct{ step, want string }{
		{"q|udp|127.0.0.53:53|secret.test|A", "NOERROR 127.0.0.15 from=127.0.0.53:53"},
		{fmt.Sprintf("c|127.0.0.15:%d", d.pa), "ok"},
		{"q|udp|127.0.0.53:53|ok.test|A", "NOERROR 127.0.0.11 from=127.0.0.53:53"},
		{fmt.Sprintf("c|127.0.0.11:%d", d.pa), "ok"},
	}
	args := []string{"--audit", "--policy", e.policy(d.policy), "--", "@", "dns"}
	var want strings.Builder
	for _, s := range steps {
		args = append(args, s.step)
		fmt.Fprintf(&want, "%s %s\n", s.step, s.want)
	}
	r := e.run(nil, args...)
	if r.status != 0 || r.stdout != want.String() {
		t.Fatalf("status %d, stdout:\n%s\nwant:\n%s\nstderr:\n%s", r.status, r.stdout, want.String(), r.stderr)
	}
	for _, re := range []string{
		`AUDIT DNS: query=secret\.test qtype=A cgroup=\d+ rule_id=1000005`,
		fmt.Sprintf(`AUDIT CONNECT: dst=127\.0\.0\.15:%d proto=tcp cgroup=\d+ rule_id=1000000`, d.pa),
	} {
		if !regexp.MustCompile(re).MatchString(r.stderr) {
			t.Errorf("stderr lacks %s:\n%s", re, r.stderr)
		}
	}
	if regexp.MustCompile(`AUDIT CONNECT: dst=127\.0\.0\.11`).MatchString(r.stderr) {
		t.Errorf("a learned address was reported:\n%s", r.stderr)
	}
}

// TestRunDNSTwoSandboxes: what one sandbox learned is not allowed in
// another one running at the same time under a policy without that name.
func TestRunDNSTwoSandboxes(t *testing.T) {
	e := newEnv(t)
	d := newDNSSetup(t)
	a := e.start("--policy", e.policy(d.policy), "--", "@", "dns", "q|udp|127.0.0.53:53|ok.test|A", fmt.Sprintf("c|127.0.0.11:%d", d.pa), "hold")
	other := fmt.Sprintf("version: 2\nnetwork:\n  default: deny\n  allow:\n    - {host: six.test, ports: [%d], id: 40}\ndns:\n  upstream: [\"%s\"]\n", d.p6, d.up.Addr)
	steps := []struct{ step, want string }{
		{"q|udp|127.0.0.53:53|ok.test|A", "NXDOMAIN from=127.0.0.53:53"},
		{fmt.Sprintf("c|127.0.0.11:%d", d.pa), "EPERM"},
	}
	args := []string{"--policy", e.policy(other), "--", "@", "dns"}
	var want strings.Builder
	for _, s := range steps {
		args = append(args, s.step)
		fmt.Fprintf(&want, "%s %s\n", s.step, s.want)
	}
	r := e.run(nil, args...)
	if r.status != 0 || r.stdout != want.String() {
		t.Fatalf("status %d, stdout:\n%s\nwant:\n%s\nstderr:\n%s", r.status, r.stdout, want.String(), r.stderr)
	}
	if !strings.Contains(a.lines["q|udp|127.0.0.53:53|ok.test|A"], "NOERROR 127.0.0.11") || a.lines[fmt.Sprintf("c|127.0.0.11:%d", d.pa)] != "ok" {
		t.Fatalf("the first sandbox: %v\nstderr:\n%s", a.lines, a.stderr.String())
	}
}

// inCgroup runs the helper's dns mode in cgroup cg (as root: the cgroup
// programs judge every process of the cgroup) and returns its stdout.
func inCgroup(t *testing.T, cg cgroup.Scope, steps ...string) string {
	t.Helper()
	f, err := cg.Open()
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	cmd := exec.Command(helperBin, append([]string{"dns"}, steps...)...)
	cmd.Env = append(os.Environ(), "ASSAY_RUN_HELPER=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(f.Fd())}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		cmd.Process.Kill()
		<-done
		t.Fatalf("helper %q did not finish\n%s", steps, errb.String())
	}
	return out.String()
}

// TestMonitorDNSReload: host entries under `assay monitor` (not pinned),
// reloaded with SIGHUP: a learned name still allowed keeps its address
// under the new rule's ports without a new query; a name no longer allowed
// loses its address and is refused.
func TestMonitorDNSReload(t *testing.T) {
	testenv.Privileged(t)
	d := newDNSSetup(t)
	cg := assaytest.NewCgroup(t)
	dir := t.TempDir()
	live := filepath.Join(dir, "policy.yaml")
	write := func(text string) {
		tmp := live + ".tmp"
		if err := os.WriteFile(tmp, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, live); err != nil {
			t.Fatal(err)
		}
	}
	write(d.policy)
	m := assaytest.StartMonitor(t, "monitor", "--cgroup", cg.Path, "--policy", live)
	pa, pb := d.pa, d.pb
	check := func(what string, steps []struct{ step, want string }) {
		t.Helper()
		var args []string
		var want strings.Builder
		for _, s := range steps {
			args = append(args, s.step)
			fmt.Fprintf(&want, "%s %s\n", s.step, s.want)
		}
		if got := inCgroup(t, cg, args...); got != want.String() {
			t.Fatalf("%s: stdout:\n%s\nwant:\n%s\nmonitor:\n%s", what, got, want.String(), strings.Join(m.Stderr(), "\n"))
		}
	}
	check("before the reload", []struct{ step, want string }{
		{"q|udp|127.0.0.53:53|ok.test|A", "NOERROR 127.0.0.11 from=127.0.0.53:53"},
		{"q|udp|127.0.0.53:53|alias.test|A", "NOERROR 127.0.0.13 from=127.0.0.53:53"},
		{fmt.Sprintf("c|127.0.0.11:%d", pa), "ok"},
		{fmt.Sprintf("c|127.0.0.13:%d", pa), "ok"},
	})
	// ok.test moves to port pb (nothing listens on 127.0.0.11:pb: an
	// allowed connect is refused by the peer, ECONNREFUSED, not EPERM);
	// alias.test goes.
	write(strings.Replace(strings.Replace(d.policy, fmt.Sprintf("{host: ok.test, ports: [%d]", pa), fmt.Sprintf("{host: ok.test, ports: [%d]", pb), 1),
		fmt.Sprintf("    - {host: alias.test, ports: [%d], id: 32}\n", pa), "", 1))
	m.Signal(syscall.SIGHUP)
	m.WaitStderr("assay: reloaded", 1, 60*time.Second)
	check("after the reload", []struct{ step, want string }{
		{fmt.Sprintf("c|127.0.0.11:%d", pb), "ECONNREFUSED"}, // kept, under the new port
		{fmt.Sprintf("c|127.0.0.11:%d", pa), "EPERM"},
		{fmt.Sprintf("c|127.0.0.13:%d", pa), "EPERM"}, // its name is no longer allowed
		{"q|udp|127.0.0.53:53|alias.test|A", "NXDOMAIN from=127.0.0.53:53"},
	})
	m.Stop()
}
