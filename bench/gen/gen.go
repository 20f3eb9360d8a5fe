// Package gen writes the policies Assay's benchmarks load: small realistic
// ones and large generated ones (100k CIDRs, 1k ports, 100k file rules).
// Generation is deterministic (fixed seeds), so every run measures the same
// rule sets.
package gen

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
)

// SmallNetPolicy is the 10-rule network policy: 4 ports, 3 IPv4 and 3 IPv6
// prefixes, none of which matches loopback.
func SmallNetPolicy() string { return smallNet("22, 23, 25, 5432") }

// SmallNetPolicyDenying is SmallNetPolicy with port also denied.
func SmallNetPolicyDenying(port int) string {
	return smallNet(fmt.Sprintf("%d, 22, 23, 25, 5432", port))
}

func smallNet(ports string) string {
	return `version: 1
network:
  deny_ports: [` + ports + `]
  deny_cidrs:
    - 169.254.169.254/32
    - 10.0.0.0/8
    - 192.168.0.0/16
    - "fd00:ec2::254/128"
    - "fd00::/8"
    - "2001:db8::/32"
`
}

// NetPolicy writes a policy with nv4 IPv4 and nv6 IPv6 deny prefixes and
// nports deny ports. None of them matches an address in keep or a port in
// keepPorts. The prefixes are random, uniform over the address space
// (/8-/32 and /16-/128), so the trie is as dense around a loopback
// destination as anywhere: a lookup walks a typical path (about log2(n)
// nodes).
// With worst, they also include, for each address in keep, every sibling
// of its path in the trie (for each length L, the /L prefix that agrees
// with the address on its first L-1 bits and differs on bit L), so that a
// lookup of that address walks the deepest path an LPM trie can have (32
// nodes for IPv4, 128 for IPv6): the adversarial case, not the typical one.
func NetPolicy(nv4, nv6, nports int, keep []netip.Addr, keepPorts []uint16, worst bool) string {
	v4, v6, ports := NetRules(nv4, nv6, nports, keep, keepPorts, worst)
	var sb strings.Builder
	sb.WriteString("version: 1\nnetwork:\n")
	if len(ports) > 0 {
		sb.WriteString("  deny_ports:\n")
		for _, p := range ports {
			fmt.Fprintf(&sb, "    - %d\n", p)
		}
	}
	if len(v4)+len(v6) > 0 {
		sb.WriteString("  deny_cidrs:\n")
		for _, p := range append(v4, v6...) {
			fmt.Fprintf(&sb, "    - %q\n", p.String())
		}
	}
	return sb.String()
}

// NetRules is NetPolicy's rules: the IPv4 and IPv6 prefixes and the ports
// (the same for the same arguments).
func NetRules(nv4, nv6, nports int, keep []netip.Addr, keepPorts []uint16, worst bool) (v4, v6 []netip.Prefix, ports []uint16) {
	rng := rand.New(rand.NewPCG(1, 2))
	seen := map[netip.Prefix]bool{}
	add := func(p netip.Prefix) {
		p = p.Masked()
		if seen[p] {
			return
		}
		for _, a := range keep {
			if p.Contains(a) {
				return
			}
		}
		if p.Addr().Is4() {
			if len(v4) >= nv4 {
				return
			}
			v4 = append(v4, p)
		} else {
			if len(v6) >= nv6 {
				return
			}
			v6 = append(v6, p)
		}
		seen[p] = true
	}
	for _, a := range keep {
		if !worst {
			break
		}
		b := a.AsSlice()
		for l := 1; l <= len(b)*8; l++ {
			s := append([]byte(nil), b...)
			s[(l-1)/8] ^= 0x80 >> ((l - 1) % 8) // flip bit l
			sa, _ := netip.AddrFromSlice(s)
			add(netip.PrefixFrom(sa, l))
		}
	}
	for len(v4) < nv4 {
		var b [4]byte
		putRand(rng, b[:])
		add(netip.PrefixFrom(netip.AddrFrom4(b), 8+rng.IntN(25)))
	}
	for len(v6) < nv6 {
		var b [16]byte
		putRand(rng, b[:])
		add(netip.PrefixFrom(netip.AddrFrom16(b), 16+rng.IntN(113)))
	}
	keepPort := map[uint16]bool{}
	for _, p := range keepPorts {
		keepPort[p] = true
	}
	seenPort := map[uint16]bool{}
	for len(ports) < nports {
		p := uint16(1 + rng.IntN(65535))
		if keepPort[p] || seenPort[p] {
			continue
		}
		seenPort[p] = true
		ports = append(ports, p)
	}
	return v4, v6, ports
}

func putRand(rng *rand.Rand, b []byte) {
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
}

// FilePolicy is a policy denying exact files and directories (written
// with a trailing slash).
func FilePolicy(files, dirs []string) string {
	var sb strings.Builder
	sb.WriteString("version: 1\nfiles:\n  deny:\n")
	for _, f := range files {
		fmt.Fprintf(&sb, "    - %s\n", f)
	}
	for _, d := range dirs {
		fmt.Fprintf(&sb, "    - %s/\n", strings.TrimSuffix(d, "/"))
	}
	return sb.String()
}

// MakeFiles creates n empty files under dir, 1000 per subdirectory, and
// returns their paths.
func MakeFiles(dir string, n int) ([]string, error) {
	out := make([]string, 0, n)
	for i := 0; i < n; i++ {
		sub := filepath.Join(dir, fmt.Sprintf("s%03d", i/1000))
		if i%1000 == 0 {
			if err := os.MkdirAll(sub, 0o755); err != nil {
				return nil, err
			}
		}
		p := filepath.Join(sub, fmt.Sprintf("f%d", i))
		f, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY, 0o644)
		if err != nil {
			return nil, err
		}
		f.Close()
		out = append(out, p)
	}
	return out, nil
}

// MakeDeep creates dir/d1/d2/.../dN/file and returns the file's path.
func MakeDeep(dir string, n int) (string, error) {
	p := dir
	for i := 1; i <= n; i++ {
		p = filepath.Join(p, fmt.Sprintf("d%d", i))
	}
	if err := os.MkdirAll(p, 0o755); err != nil {
		return "", err
	}
	f := filepath.Join(p, "file")
	return f, os.WriteFile(f, []byte("x"), 0o644)
}

// WriteFile writes s to dir/name and returns the path.
func WriteFile(dir, name, s string) (string, error) {
	p := filepath.Join(dir, name)
	return p, os.WriteFile(p, []byte(s), 0o644)
}

// NftRuleset is the same rules for nftables (Debian's nft): table inet
// assay_bench with interval sets of the prefixes (auto-merge: random
// prefixes overlap) and a set of the ports, a chain "sandbox" that drops
// what they match, and an output chain, empty: NftJump is the rule that
// sends one cgroup's packets through the sandbox chain.
func NftRuleset(v4, v6 []netip.Prefix, ports []uint16) string {
	var sb strings.Builder
	sb.WriteString("table inet assay_bench {\n")
	set := func(name, typ string, elems []string) {
		fmt.Fprintf(&sb, "\tset %s {\n\t\ttype %s\n", name, typ)
		if typ != "inet_service" {
			sb.WriteString("\t\tflags interval\n\t\tauto-merge\n")
		}
		sb.WriteString("\t\telements = { ")
		sb.WriteString(strings.Join(elems, ", "))
		sb.WriteString(" }\n\t}\n")
	}
	strs := func(ps []netip.Prefix) []string {
		out := make([]string, len(ps))
		for i, p := range ps {
			out[i] = p.String()
		}
		return out
	}
	ps := make([]string, len(ports))
	for i, p := range ports {
		ps[i] = fmt.Sprint(p)
	}
	set("d4", "ipv4_addr", strs(v4))
	set("d6", "ipv6_addr", strs(v6))
	set("p", "inet_service", ps)
	sb.WriteString("\tchain sandbox {\n\t\tip daddr @d4 drop\n\t\tip6 daddr @d6 drop\n\t\tmeta l4proto { tcp, udp } th dport @p drop\n\t}\n")
	sb.WriteString("\tchain out {\n\t\ttype filter hook output priority filter; policy accept;\n\t}\n}\n")
	return sb.String()
}

// NftJump is the rule that sends the packets of the cgroup at path (relative
// to the cgroup2 mount) and level through the sandbox chain.
func NftJump(path string, level int) string {
	return fmt.Sprintf("add rule inet assay_bench out socket cgroupv2 level %d %q jump sandbox\n", level, path)
}
