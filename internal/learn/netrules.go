package learn

import (
	"fmt"
	"net/netip"
	"sort"
	"strings"

	"github.com/assaymcp/assay/internal/policy"
)

// netEntries are the network rules: by host name where the address came
// from a lookup (with Hosts), else by address; the ports and protocol seen.
func (r *Recorder) netEntries(cov *policy.Policy, hosts bool, res *Result) []entry {
	r.mu.Lock()
	defer r.mu.Unlock()
	type hk struct {
		name  string
		proto policy.Proto
	}
	byHost := map[hk]map[uint16]int{}
	var out []entry
	keys := make([]NetKey, 0, len(r.nets))
	for k := range r.nets {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if c := keys[i].Addr.Compare(keys[j].Addr); c != 0 {
			return c < 0
		}
		return keys[i].Proto < keys[j].Proto
	})
	for i, k := range keys {
		u := r.nets[k]
		proto := k.Proto
		if proto != policy.ProtoTCP && proto != policy.ProtoUDP {
			proto = policy.ProtoAny
		}
		ports := map[uint16]int{}
		for port, n := range u.Ports {
			if port == 53 && hosts && len(r.names) > 0 {
				// DNS: with host entries every query goes to assay's
				// resolver (the kernel redirects port 53).
				continue
			}
			if cov.NetVerdict(k.Addr, port, proto).Allowed {
				res.Covered++
				continue
			}
			ports[port] += n
		}
		if len(ports) == 0 {
			continue
		}
		if names := r.names[k.Addr]; hosts && len(names) > 0 {
			for n := range names {
				m := byHost[hk{n, proto}]
				if m == nil {
					m = map[uint16]int{}
					byHost[hk{n, proto}] = m
				}
				for p, c := range ports {
					m[p] += c
				}
			}
			continue
		}
		e := entry{line: netLine("cidr", netip.PrefixFrom(k.Addr, k.Addr.BitLen()).String(), ports, proto),
			sortKey: fmt.Sprintf("1 %06d", i), comment: netSeen(ports, proto, r.names[k.Addr])}
		if why := SensitiveAddr(k.Addr); why != "" {
			e.warn = "sensitive: " + why
			res.Sensitive = append(res.Sensitive, fmt.Sprintf("%s (%s): %s", k.Addr, why, proto))
		}
		out = append(out, e)
	}
	for k, ports := range byHost {
		e := entry{line: netLine("host", k.name, ports, k.proto), sortKey: "0 " + k.name + " " + k.proto.String(), comment: netSeen(ports, k.proto, nil)}
		if why := sensitiveHost(k.name); why != "" {
			e.warn = "sensitive: " + why
			res.Sensitive = append(res.Sensitive, fmt.Sprintf("%s (%s): %s", k.name, why, k.proto))
		}
		out = append(out, e)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].sortKey < out[j].sortKey })
	for _, e := range out {
		if e.warn == "" {
			res.Network++
		}
	}
	return out
}
func netSeen(ports map[uint16]int, proto policy.Proto, names map[string]bool) string {
	n := 0
	for _, c := range ports {
		n += c
	}
	verb := "connects/sends"
	switch proto {
	case policy.ProtoTCP:
		verb = plural(n, "connect", "connects")
	case policy.ProtoUDP:
		verb = plural(n, "send", "sends")
	}
	s := fmt.Sprintf("seen: %d %s", n, verb)
	if len(names) > 0 {
		var ns []string
		for k := range names {
			ns = append(ns, k)
		}
		sort.Strings(ns)
		s += "; answered for " + strings.Join(ns, ", ")
	}
	return s
}
