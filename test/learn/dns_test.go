package learn_test

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/assaymcp/assay/internal/dns/dnstest"
)

// resolver asks 127.0.0.53:53 (any port-53 destination: the kernel sends
// the sandbox's queries to assay's resolver) for NAME's A record over UDP,
// connects to the answer on PORT and prints what it read; with a second
// port it also tries that one.
const resolver = `import socket, struct, sys
def resolve(name):
    q = struct.pack(">HHHHHH", 0x1234, 0x0100, 1, 0, 0, 0)
    q += b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0" + struct.pack(">HH", 1, 1)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(10)
    s.sendto(q, ("127.0.0.53", 53))
    r, _ = s.recvfrom(4096)
    an = struct.unpack(">H", r[6:8])[0]
    i = 12
    while r[i] != 0:
        i += 1 + r[i]
    i += 5
    for _ in range(an):
        if r[i] & 0xc0 == 0xc0:
            i += 2
        else:
            while r[i] != 0:
                i += 1 + r[i]
            i += 1
        typ, cls, ttl, n = struct.unpack(">HHIH", r[i:i+10])
        i += 10
        if typ == 1:
            return socket.inet_ntoa(r[i:i+4])
        i += n
    raise SystemExit("no A record")
addr = resolve(sys.argv[1])
c = socket.create_connection((addr, int(sys.argv[2])), timeout=10)
out = [addr, c.recv(16).decode()]
c.close()
if len(sys.argv) > 3:
    try:
        socket.create_connection((addr, int(sys.argv[3])), timeout=10).close()
        out.append("other port connected")
    except OSError as e:
        out.append("other port: " + e.strerror)
print(" ".join(out))
`

// TestLearnHostName: a program resolving svc.test (through assay's
// resolver, forwarded to a loopback test upstream: never
// /etc/resolv.conf) and connecting to the answer is learned as a host
// entry with its port and protocol, and the upstream as dns.upstream;
// under assay run with that policy it works, and the same name on another
// port is refused.
func TestLearnHostName(t *testing.T) {
	f := newFixture(t)
	up := dnstest.Start(t, "127.0.0.1", []string{"svc.test. 60 IN A 127.0.0.1"})
	script := filepath.Join(f.dir, "resolve.py")
	if err := os.WriteFile(script, []byte(resolver), 0o644); err != nil {
		t.Fatal(err)
	}
	pol := filepath.Join(f.out, "learned.yaml")
	argv := []string{f.python, script, "svc.test", strconv.Itoa(f.port)}
	lr := assay(t, append([]string{"learn", "--dns-upstream", up.Addr.String(), "--out", pol, "--"}, argv...)...)
	if lr.status != 0 || strings.TrimSpace(lr.stdout) != "127.0.0.1 hi" {
		t.Fatalf("assay learn: status %d stdout %q\n%s", lr.status, lr.stdout, lr.stderr)
	}
	text, _ := os.ReadFile(pol)
	t.Logf("learned policy:\n%s", text)
	for _, want := range []string{
		"- {host: svc.test, ports: [" + strconv.Itoa(f.port) + "], proto: tcp}",
		"dns:\n  upstream: [\"" + up.Addr.String() + "\"]",
	} {
		if !strings.Contains(string(text), want) {
			t.Errorf("learned policy lacks %q", want)
		}
	}
	if strings.Contains(string(text), "cidr:") {
		t.Errorf("an address entry besides the host entry")
	}
	rr := assay(t, append([]string{"run", "--policy", pol, "--"}, append(argv, strconv.Itoa(f.otherPort))...)...)
	if strings.TrimSpace(rr.stdout) != "127.0.0.1 hi other port: Operation not permitted" {
		t.Errorf("under the learned policy: status %d stdout %q\n%s", rr.status, rr.stdout, rr.stderr)
	}
}
