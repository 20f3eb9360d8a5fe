package session

// Compiling a policy into kernel rules.

import (
	"fmt"

	"github.com/assaymcp/assay/internal/kernel"
	"github.com/assaymcp/assay/internal/policy"
)

// Compile turns a policy into kernel rules, resolving each file rule to the
// identity the kernel gives its inode (see compileFiles). Any path that
// cannot be resolved safely, or whose identity the kernel cannot be relied
// on to keep, is an error: a rule is never silently dropped.
func Compile(p *policy.Policy) (kernel.Rules, error) { return CompileIn(p, "") }

// CompileIn is Compile with policy paths resolved inside root (see
// Options.PathRoot).
func CompileIn(p *policy.Policy, root string) (kernel.Rules, error) {
	if p.Version == 2 {
		return compileV2(p, root)
	}
	r := kernel.Rules{DenyPorts: map[uint16]uint32{}}
	for _, pr := range p.DenyPorts {
		r.DenyPorts[pr.Port] = pr.ID
	}
	for _, c := range p.DenyCIDRs {
		r.DenyCIDRs = append(r.DenyCIDRs, kernel.CIDR{Prefix: c.Prefix, ID: c.ID})
	}
	for _, c := range p.AllowCIDRs {
		r.AllowCIDRs = append(r.AllowCIDRs, kernel.CIDR{Prefix: c.Prefix, ID: c.ID})
	}
	files, err := compileFiles(p, root)
	if err != nil {
		return r, err
	}
	r.Files = files
	return r, nil
}

// noToolRules refuses a policy with mcp.tools rules: the kernel programs
// know nothing of MCP; only `assay run --mcp` enforces those rules.
func noToolRules(p *policy.Policy) error {
	if p.HasToolRules() {
		return fmt.Errorf("%s: the mcp.tools rules are enforced by `assay run --mcp` (assay relays the server's stdio), not by the kernel: a monitor cannot enforce them; remove the mcp section or run the server with `assay run --mcp`", p.File)
	}
	return nil
}
