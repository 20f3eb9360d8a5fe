package policy

import (
	"fmt"
	"net/netip"
	"sort"
	"strings"
)

// Widening is one thing a new policy allows that an old one did not.
type Widening struct {
	Section string // "files" or "network"
	What    string // the path (a directory ends in "/") or the destination
	New     string // what the new policy allows there, and by which rule
	Old     string // what the old one allowed there
}

func (w Widening) String() string {
	return fmt.Sprintf("+ %s %s: %s (was: %s)", w.Section, w.What, w.New, w.Old)
}

// Diff lists what newp allows that oldp did not. Both must be version 2.
//
// Files: the access a policy grants is constant between rule paths, so the
// two policies are compared at every rule path of either (and at /):
// where the new one grants a letter the old one does not, that region is
// widened. Network: every allow entry of the new policy is compared,
// address by address at its prefix's first address, port by port (every
// port: port 0 stands for "any"), with the old policy's verdict; and every
// deny entry of the old one with the new verdict; and the defaults.
func Diff(oldp, newp *Policy) ([]Widening, error) {
	for _, p := range []*Policy{oldp, newp} {
		if p.Version != 2 {
			return nil, fmt.Errorf("%s: version %d: policy diff compares version 2 policies", p.File, p.Version)
		}
	}
	var out []Widening
	seen := map[string]bool{"/": true}
	points := []string{"/"}
	for _, p := range []*Policy{oldp, newp} {
		for _, r := range p.FileRules() {
			if !seen[r.Path] {
				seen[r.Path] = true
				points = append(points, r.Path)
			}
		}
	}
	sort.Strings(points)
	for _, pt := range points {
		o, n := fileAccessAt(oldp, pt), fileAccessAt(newp, pt)
		if extra := n.Access &^ o.Access; extra != 0 {
			what := pt
			if pt != "/" && dirRule(newp, pt) {
				what += "/"
			}
			out = append(out, Widening{Section: "files", What: what,
				New: fmt.Sprintf("%s (+%s) by %s", n.Access, extra, ruleText(n.Rule)),
				Old: fmt.Sprintf("%s by %s", o.Access, ruleText(o.Rule))})
		}
	}
	type probe struct {
		addr  netip.Addr
		port  uint16
		proto Proto
		what  string
	}
	var probes []probe
	add := func(r NetRule) {
		addrs := []netip.Addr{netip.IPv4Unspecified(), netip.IPv6Unspecified()}
		if !r.AnyAddr {
			addrs = []netip.Addr{r.Prefix.Addr()}
		}
		ports := r.Ports
		if ports == nil {
			ports = []uint16{0}
		}
		protos := []Proto{r.Proto}
		if r.Proto == ProtoAny {
			protos = []Proto{ProtoTCP, ProtoUDP}
		}
		for _, a := range addrs {
			for _, p := range ports {
				for _, pr := range protos {
					probes = append(probes, probe{a, p, pr, r.Detail()})
				}
			}
		}
	}
	for _, r := range newp.NetAllow {
		if r.Host != "" {
			if w, ok := hostWidening(oldp, r); ok {
				out = append(out, w)
			}
			continue
		}
		add(r)
	}
	for _, r := range oldp.NetDeny {
		add(r)
	}
	if newp.NetDefault == DefaultAllow && oldp.NetDefault == DefaultDeny {
		add(NetRule{AnyAddr: true})
	}
	done := map[string]bool{}
	for _, pb := range probes {
		o, n := netAllowed(oldp, pb.addr, pb.port, pb.proto), netAllowed(newp, pb.addr, pb.port, pb.proto)
		if !n || o {
			continue
		}
		dest := pb.addr.String()
		if pb.addr.IsUnspecified() {
			dest = "any address"
		}
		if pb.port != 0 {
			dest = fmt.Sprintf("%s port %d", dest, pb.port)
		} else {
			dest += " any port"
		}
		dest += " " + pb.proto.String()
		if done[dest] {
			continue
		}
		done[dest] = true
		out = append(out, Widening{Section: "network", What: dest, New: "allowed (" + pb.what + ")", Old: "refused"})
	}
	return out, nil
}

func fileAccessAt(p *Policy, at string) FileDecision { return p.FileAccess(at) }

func dirRule(p *Policy, at string) bool {
	for _, r := range p.FileRules() {
		if r.Path == at {
			return r.WantDir
		}
	}
	return false
}

// netAllowed: a probe port of 0 means every port, so a rule limited to
// ports does not allow it.
func netAllowed(p *Policy, a netip.Addr, port uint16, proto Proto) bool {
	if a.IsUnspecified() {
		// Every address: only a rule without a prefix (or the default)
		// decides for all of them.
		for _, r := range p.NetDeny {
			if r.AnyAddr && (r.Ports == nil || port != 0 && contains(r.Ports, port)) && (r.Proto == ProtoAny || r.Proto == proto) {
				return false
			}
		}
		for _, r := range p.NetAllow {
			if r.AnyAddr && (r.Ports == nil || port != 0 && contains(r.Ports, port)) && (r.Proto == ProtoAny || r.Proto == proto) {
				return true
			}
		}
		return p.NetDefault == DefaultAllow
	}
	if port == 0 {
		for _, r := range p.NetDeny {
			if (r.AnyAddr || r.Prefix.Contains(a)) && (r.Proto == ProtoAny || r.Proto == proto) {
				return false
			}
		}
		for _, r := range p.NetAllow {
			if (r.AnyAddr || r.Prefix.Contains(a)) && r.Ports == nil && (r.Proto == ProtoAny || r.Proto == proto) {
				return true
			}
		}
		return p.NetDefault == DefaultAllow
	}
	return p.NetVerdict(a, port, proto).Allowed
}

func contains(ps []uint16, p uint16) bool {
	for _, x := range ps {
		if x == p {
			return true
		}
	}
	return false
}

func ruleText(r Rule) string {
	s := fmt.Sprintf("rule %d", r.ID)
	if r.Line > 0 {
		s += fmt.Sprintf(" (line %d)", r.Line)
	}
	if r.Kind == KindFilesDefault || r.Kind == KindBaselinePath {
		s += " " + strings.SplitN(r.Detail, " (", 2)[0]
		if r.Kind == KindBaselinePath {
			s += " (runtime baseline)"
		}
	}
	return s
}

// hostWidening: a host entry of the new policy that no host entry of the
// old one covers (the same name or a wildcard over it, every port and the
// protocol of the new one), or the old default allow.
func hostWidening(oldp *Policy, r NetRule) (Widening, bool) {
	if oldp.NetDefault == DefaultAllow {
		return Widening{}, false
	}
	name := strings.TrimPrefix(r.Host, "*.")
	for _, o := range oldp.NetAllow {
		if o.Host == "" || !(o.Host == r.Host || strings.HasPrefix(o.Host, "*.") && HostMatch(o.Host, name)) {
			continue
		}
		if o.Proto != ProtoAny && o.Proto != r.Proto {
			continue
		}
		if o.Ports == nil {
			return Widening{}, false
		}
		all := r.Ports != nil
		for _, p := range r.Ports {
			all = all && contains(o.Ports, p)
		}
		if all {
			return Widening{}, false
		}
	}
	return Widening{Section: "network", What: "host " + r.Detail(), New: "allowed (names resolved through assay's resolver)", Old: "refused"}, true
}
