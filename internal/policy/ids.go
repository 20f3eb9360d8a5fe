// Rule ids: explicit ids and the stable assignment of the rest.

package policy

import (
	"go.yaml.in/yaml/v3"
)

func (ps *parser) id(n *yaml.Node, path string) (uint32, *Error) {
	v, fits, text, err := ps.integer(n, path)
	if err != nil {
		return 0, err
	}
	if !fits || v < 1 || v > int64(MaxUserID) {
		return 0, ps.errf(n.Line, path, "id %s is outside 1-%d (higher ids are reserved)", text, MaxUserID)
	}
	id := uint32(v)
	if line, dup := ps.ids[id]; dup {
		return 0, ps.errf(n.Line, path, "id %d already used at line %d", id, line)
	}
	ps.ids[id] = n.Line
	return id, nil
}

// optID validates an optional id node; 0 means none.
func (ps *parser) optID(n *yaml.Node, path string) (uint32, *Error) {
	if n == nil {
		return 0, nil
	}
	return ps.id(n, path)
}

// assignIDs gives every rule without an explicit id one; see the package doc.
func (ps *parser) assignIDs(pol *Policy) *Error {
	next := uint32(1)
	assign := func(id *uint32, line int, field string) *Error {
		if *id != 0 {
			return nil
		}
		for {
			if _, used := ps.ids[next]; !used {
				break
			}
			next++
		}
		if next > MaxUserID {
			return ps.errf(line, field, "too many rules: ids 1-%d are all used", MaxUserID)
		}
		*id = next
		next++
		return nil
	}
	// Sections in the fixed order of the package doc; each rule without
	// an explicit id gets the smallest free one.
	if pol.Version == 2 {
		return firstError(
			assignEach(pol.NetDeny, "network.deny", assign),
			assignEach(pol.NetAllow, "network.allow", assign),
			assignEach(pol.FileDeny, "files.deny", assign),
			assignEach(pol.FileAllow, "files.allow", assign),
			assignEach(pol.ToolDeny, "mcp.tools.deny", assign),
			assignEach(pol.ToolAllow, "mcp.tools.allow", assign))
	}
	return firstError(
		assignEach(pol.DenyPorts, "network.deny_ports", assign),
		assignEach(pol.DenyCIDRs, "network.deny_cidrs", assign),
		assignEach(pol.AllowCIDRs, "network.allow_cidrs", assign),
		assignEach(pol.FileDeny, "files.deny", assign),
		assignEach(pol.ToolDeny, "mcp.tools.deny", assign),
		assignEach(pol.ToolAllow, "mcp.tools.allow", assign))
}

// numbered is a rule with an id and the line it was written on.
type numbered interface{ idLine() (*uint32, int) }

func (r *PortRule) idLine() (*uint32, int) { return &r.ID, r.Line }
func (r *CIDRRule) idLine() (*uint32, int) { return &r.ID, r.Line }
func (r *FileRule) idLine() (*uint32, int) { return &r.ID, r.Line }
func (r *NetRule) idLine() (*uint32, int)  { return &r.ID, r.Line }
func (r *ToolRule) idLine() (*uint32, int) { return &r.ID, r.Line }

// assignEach runs assign over one section's rules, in order, and returns
// the first error.
func assignEach[T any, P interface {
	*T
	numbered
}](rules []T, section string, assign func(id *uint32, line int, field string) *Error) *Error {
	for i := range rules {
		id, line := P(&rules[i]).idLine()
		if err := assign(id, line, index(section, i)); err != nil {
			return err
		}
	}
	return nil
}

// firstError returns the first non-nil error (the arguments are evaluated
// in order, so the sections are assigned in order).
func firstError(errs ...*Error) *Error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}
