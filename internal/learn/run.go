package learn

import (
	"fmt"
	"io"
	"net/netip"
	"os"
	"strings"

	"github.com/assaymcp/assay/internal/dns"
	"github.com/assaymcp/assay/internal/events"
	"github.com/assaymcp/assay/internal/policy"
	"github.com/assaymcp/assay/internal/sandbox"
	"github.com/assaymcp/assay/internal/session"
)

// observePolicy is what `assay learn` runs the command under: audit mode,
// so nothing is blocked; network default deny, so that every connect and
// send is reported (as an audit event naming its destination); no file
// rules (the tracepoint path reports every open and execution, named by
// the kernel). Every DNS query goes to assay's resolver in observe mode
// (forwarded to the upstream: --dns-upstream, else /etc/resolv.conf's),
// which reports every answer: addresses are learned by name.
const observePolicy = "version: 2\nmode: audit\nnetwork:\n  default: deny\n"

// Run runs the command (o.Argv, contained as by `assay run`) observed and
// returns the command's exit status, whether it ran (was executed: not
// when assay failed first or the command could not be executed), and what
// it did.
// o.Policy, Audit and Trace are set here.
func Run(o sandbox.Options, upstream []netip.AddrPort) (status int, ran bool, rec *Recorder, sum events.Summary) {
	self, err := os.Executable()
	if err != nil {
		self = "/proc/self/exe"
	}
	rec = NewRecorder(self)
	p, err := policy.Parse("assay learn (observe mode: audit, every connection reported, every open traced, every name resolved through assay)", []byte(observePolicy))
	if err != nil {
		fmt.Fprintln(o.Log, "assay: "+err.Error())
		return sandbox.ExitSetup, false, rec, sum
	}
	// The resolvers (a policy's dns section needs host entries: set here).
	p.DNS.Upstream = upstream
	o.Policy, o.Audit, o.Trace, o.Learn = p, true, true, true
	o.RateLimit = -1 // every event: a missed one is a rule missing
	o.Observe = rec.Observe
	o.OnSummary = func(s events.Summary) { sum, ran = s, true }
	o.DNSObserve = true
	if len(upstream) == 0 {
		if _, err := dns.SystemUpstream(session.ResolvConf); err != nil {
			// No resolver to forward to: names are not observed (the
			// queries are not redirected), destinations learned by
			// address.
			o.DNSObserve = false
			fmt.Fprintf(o.Log, "assay learn: note: no --dns-upstream and %v: names are not observed, destinations are learned by address\n", err)
		}
	}
	o.OnDNSAnswer = func(a dns.Answer) { rec.Resolved(a.Name, a.Addrs) }
	if o.Events == nil {
		o.Events = io.Discard
	}
	status = sandbox.Run(o)
	return status, ran && rec.Started(), rec, sum
}

// upstreamList writes resolver addresses as a YAML flow list's items.
func upstreamList(up []netip.AddrPort) string {
	q := make([]string, len(up))
	for i, a := range up {
		q[i] = `"` + a.String() + `"`
	}
	return strings.Join(q, ", ")
}
