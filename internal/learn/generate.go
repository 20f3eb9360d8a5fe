package learn

import (
	"fmt"
	"net/netip"
	"sort"

	"github.com/assaymcp/assay/internal/policy"
)

// Options say how to write the policy.
type Options struct {
	// Base, when set, is the policy to start from (--policy BASE): only
	// what it does not allow yet is added. BaseText is its file's text.
	Base     *policy.Policy
	BaseText []byte
	// Argv is the command that was observed (named in the header).
	Argv []string
	// Hosts: write network entries by host name where the address came
	// from a lookup (the policy format has host entries).
	Hosts bool
	// Upstream, when set, is written as the policy's dns.upstream when it
	// has host entries (the resolvers the learned run used).
	Upstream []netip.AddrPort
	// Subdirs, when set, lists a directory's subdirectories as they are
	// when the policy is written (see the collapse rule); ok false when it
	// cannot be read. Nil: not considered.
	Subdirs func(dir string) (names []string, ok bool)
}

// Result is the written policy and what the summary says about it.
type Result struct {
	Policy []byte
	// Sensitive lists the sensitive paths and addresses the run touched,
	// one line each (written commented out in the policy).
	Sensitive []string
	// Widened lists the rules that reach beyond what the run used
	// (creation in a shared directory), one line each.
	Widened []string
	// Files and Network count the rules written (commented ones excluded);
	// Covered the observed paths the baseline or BASE already allowed.
	Files, Network, Covered int
}

// entry is one rule to write.
type entry struct {
	line    string // the YAML flow mapping
	comment string // what was seen
	warn    string // non-empty: written commented out, with this warning
	sortKey string
}

// Generate writes the policy.
func Generate(r *Recorder, o Options) (Result, error) {
	var res Result
	cov := o.Base
	if cov == nil {
		cov = &policy.Policy{Version: 2, FilesSet: true, FileDefault: policy.DefaultDeny, Baseline: policy.BaselineRuntime,
			NetworkSet: true, NetDefault: policy.DefaultDeny}
	}
	fileEntries := r.fileEntries(cov, o, &res)
	netEntries := r.netEntries(cov, o.Hosts, &res)
	var out []byte
	var err error
	if o.Base != nil {
		out, err = mergeBase(o, fileEntries, netEntries)
	} else {
		out = fresh(o, fileEntries, netEntries)
	}
	if err != nil {
		return res, err
	}
	if _, err := policy.Parse("learned policy", out); err != nil {
		return res, fmt.Errorf("the written policy does not parse (a bug): %w", err)
	}
	res.Policy = out
	sort.Strings(res.Sensitive)
	sort.Strings(res.Widened)
	return res, nil
}
