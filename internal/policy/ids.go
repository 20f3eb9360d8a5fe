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
	if pol.Version == 2 {
		return ps.assignIDsV2(pol, assign)
	}
	for i := range pol.DenyPorts {
		if err := assign(&pol.DenyPorts[i].ID, pol.DenyPorts[i].Line, index("network.deny_ports", i)); err != nil {
			return err
		}
	}
	for i := range pol.DenyCIDRs {
		if err := assign(&pol.DenyCIDRs[i].ID, pol.DenyCIDRs[i].Line, index("network.deny_cidrs", i)); err != nil {
			return err
		}
	}
	for i := range pol.AllowCIDRs {
		if err := assign(&pol.AllowCIDRs[i].ID, pol.AllowCIDRs[i].Line, index("network.allow_cidrs", i)); err != nil {
			return err
		}
	}
	for i := range pol.FileDeny {
		if err := assign(&pol.FileDeny[i].ID, pol.FileDeny[i].Line, index("files.deny", i)); err != nil {
			return err
		}
	}
	for i := range pol.ToolDeny {
		if err := assign(&pol.ToolDeny[i].ID, pol.ToolDeny[i].Line, index("mcp.tools.deny", i)); err != nil {
			return err
		}
	}
	for i := range pol.ToolAllow {
		if err := assign(&pol.ToolAllow[i].ID, pol.ToolAllow[i].Line, index("mcp.tools.allow", i)); err != nil {
			return err
		}
	}
	return nil
}
