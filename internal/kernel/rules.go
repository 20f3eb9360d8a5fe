package kernel

import (
	"fmt"
	"net/netip"
)

// Reserved rule ids, shared with the BPF side (bpf/common.h).
const (
	RuleNotInAllowCIDRs uint32 = 1000000 // destination outside allow_cidrs
	RuleTooDeep         uint32 = 1000001 // ancestry deeper than the in-kernel walk (fail closed)
	RuleFilesDefault    uint32 = 1000002 // version 2: no file rule matched and files.default is deny
	RuleDisconnected    uint32 = 1000003 // ancestry unknown: a disconnected dentry (fail closed)
	RuleAbstractUnix    uint32 = 1000004 // an abstract Unix socket outside the scope
	RuleShim            uint32 = 1000006 // version 2 under assay run: assay's own executable (r, x), which starts the command
)

// Rules is what the kernel enforces, in the kernel's terms. It is built
// from a policy by the caller; this package knows nothing of policy files.
type Rules struct {
	DenyPorts  map[uint16]uint32 // port -> rule id
	DenyCIDRs  []CIDR
	AllowCIDRs []CIDR
	Files      []File
	// FilesV2: the file rules are version 2's (Access says what each
	// allows; abstract Unix sockets follow the network default).
	FilesV2 bool
	// FilesDefaultDeny: with FilesV2, a file no rule covers is refused
	// under RuleFilesDefault (files.default: deny).
	FilesDefaultDeny bool
	Net2             *Net2 // version 2 network rules; nil for version 1 policies
	DNS              *DNS  // host entries: DNS redirected to assay's resolver (dns.go); needs Net2
}

// settings.files bits (bpf/file_rules.h).
const (
	filesV2          = 1
	filesDefaultDeny = 2
)

// Access bits of a file rule (bpf/file_rules.h ACC_*; the same as
// policy.Access).
const (
	AccessRead  uint8 = 1
	AccessWrite uint8 = 2
	AccessExec  uint8 = 4
)

// CIDR is one prefix and the id of its rule.
type CIDR struct {
	Prefix netip.Prefix
	ID     uint32
}

// File is one file-rule inode: Dev in the kernel's encoding
// (MKDEV(major, minor) = major<<20 | minor).
type File struct {
	Dev   uint32
	Ino   uint64
	ID    uint32
	IsDir bool
	FS    string // the filesystem type, as the kernel names it
	// Access is what the rule allows (Access* bits): 0 for a version 1
	// rule or a version 2 deny, which allow nothing.
	Access uint8
}

// ProcKeyDev and ProcSelfIno key procfs rules (bpf/file_rules.h): every
// procfs instance has the device ProcKeyDev, and every inode of a
// process's own /proc/PID directory, as that process sees it, the inode
// number ProcSelfIno.
const (
	ProcKeyDev  uint32 = 0xffffffff
	ProcSelfIno uint64 = 1 << 32
)

// HasNetwork reports whether any network rule is present.
func (r *Rules) HasNetwork() bool {
	return len(r.DenyPorts) > 0 || len(r.DenyCIDRs) > 0 || len(r.AllowCIDRs) > 0 ||
		(r.Net2 != nil && (len(r.Net2.Deny) > 0 || r.Net2.DefaultDeny)) || r.DNS != nil
}

// HasFiles reports whether any file rule is present (a version 2
// files.default: deny is one).
func (r *Rules) HasFiles() bool { return len(r.Files) > 0 || (r.FilesV2 && r.FilesDefaultDeny) }

func (r *Rules) hasDirRules() bool {
	for _, f := range r.Files {
		if f.IsDir {
			return true
		}
	}
	return false
}

// split returns the prefixes of each family as LPM keys.
func splitCIDRs(cs []CIDR) (v4 []bpfAssayLpmV4Key, v4ids []uint32, v6 []bpfAssayLpmV6Key, v6ids []uint32, err error) {
	for _, c := range cs {
		p := c.Prefix.Masked()
		switch {
		case p.Addr().Is4():
			a := p.Addr().As4()
			// Addr is stored in network byte order: the bytes as they are.
			v4 = append(v4, bpfAssayLpmV4Key{Prefixlen: uint32(p.Bits()), Addr: uint32(a[0]) | uint32(a[1])<<8 | uint32(a[2])<<16 | uint32(a[3])<<24})
			v4ids = append(v4ids, c.ID)
		case p.Addr().Is6():
			v6 = append(v6, bpfAssayLpmV6Key{Prefixlen: uint32(p.Bits()), Addr: p.Addr().As16()})
			v6ids = append(v6ids, c.ID)
		default:
			return nil, nil, nil, nil, fmt.Errorf("invalid prefix %v", c.Prefix)
		}
	}
	return v4, v4ids, v6, v6ids, nil
}
