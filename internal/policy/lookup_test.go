package policy

// Lookups only the tests use (assay itself never looks a rule up by id:
// events carry what they report).

// HasNetworkRules reports whether the policy has any network rule.
func (p *Policy) HasNetworkRules() bool {
	return len(p.DenyPorts) > 0 || len(p.AllowCIDRs) > 0 || len(p.DenyCIDRs) > 0 ||
		len(p.NetAllow) > 0 || len(p.NetDeny) > 0 || (p.NetworkSet && p.NetDefault == DefaultDeny)
}

// RuleByID returns the rule with the given id.
func (p *Policy) RuleByID(id uint32) (Rule, bool) {
	if p.Version == 2 {
		// Version 2 rules first; the tool rules are shared with version 1.
		if r, ok := p.v2RuleByID(id); ok || id == NotInAllowCIDRsID {
			return r, ok
		}
	}
	if id == NotInAllowCIDRsID {
		return notInAllowRule, len(p.AllowCIDRs) > 0
	}
	for _, r := range p.DenyPorts {
		if r.ID == id {
			return portRule(r), true
		}
	}
	for _, r := range p.DenyCIDRs {
		if r.ID == id {
			return cidrRule(r, KindDenyCIDR), true
		}
	}
	for _, r := range p.AllowCIDRs {
		if r.ID == id {
			return cidrRule(r, KindAllowCIDR), true
		}
	}
	for _, r := range p.FileDeny {
		if r.ID == id {
			return fileRule(r), true
		}
	}
	if id == NotInAllowToolsID {
		return notInAllowToolsRule, p.ToolAllowList
	}
	for _, r := range p.ToolDeny {
		if r.ID == id {
			return toolRule(r, KindDenyTool), true
		}
	}
	for _, r := range p.ToolAllow {
		if r.ID == id {
			return toolRule(r, KindAllowTool), true
		}
	}
	return Rule{}, false
}

// v2RuleByID finds a version 2 rule (baseline rules included).
func (p *Policy) v2RuleByID(id uint32) (Rule, bool) {
	switch id {
	case NotInAllowCIDRsID:
		return p.netDefaultRule(), p.NetworkSet && p.NetDefault == DefaultDeny
	case FilesDefaultID:
		return p.filesDefaultRule(), p.FilesSet && p.FileDefault == DefaultDeny
	case DNSDefaultID:
		return dnsDefaultRule(), p.HasHosts()
	}
	for _, r := range p.NetDeny {
		if r.ID == id {
			return netRule(r, KindNetDeny), true
		}
	}
	for _, r := range p.NetAllow {
		if r.ID == id {
			return netRule(r, KindNetAllow), true
		}
	}
	for _, r := range p.FileRules() {
		if r.ID == id {
			return p.fileRuleView(r), true
		}
	}
	return Rule{}, false
}
