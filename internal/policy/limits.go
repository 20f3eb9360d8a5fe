// The limits section: resource limits of `assay run`'s cgroup.
//
//	limits:
//	  memory: 512M      # bytes: a plain integer, or with a K, M or G suffix
//	  pids: 256         # processes and threads
//	  cpu: 0.5          # cores
//
// The same in both policy versions. `assay run`'s --memory, --pids and --cpu
// override the policy's values; `assay monitor` ignores the section (it
// does not own the cgroups it judges).

package policy

import (
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Limits are the policy's resource limits; zero means none.
type Limits struct {
	Memory int64   // bytes
	Pids   int64   // processes and threads
	CPU    float64 // cores
}

// Bounds of the limits section.
const (
	MinMemory = 1 << 20 // a program needs more than a MiB
	MaxMemory = 1 << 50
	MaxPids   = 1 << 22 // the kernel's pid_max limit
	MaxCPU    = 4096
)

func (ps *parser) limits(n *yaml.Node, path string, pol *Policy) *Error {
	_, err := ps.walk(n, path, pol,
		section{name: "memory", parse: func(ps *parser, n *yaml.Node, path string, pol *Policy) (err *Error) {
			pol.Limits.Memory, err = ps.bytes(n, path)
			return err
		}},
		section{name: "pids", parse: func(ps *parser, n *yaml.Node, path string, pol *Policy) (err *Error) {
			pol.Limits.Pids, err = ps.intRange(n, path, 1, MaxPids)
			return err
		}},
		section{name: "cpu", parse: func(ps *parser, n *yaml.Node, path string, pol *Policy) *Error {
			if n.Kind != yaml.ScalarNode || (n.ShortTag() != "!!float" && n.ShortTag() != "!!int") {
				return ps.typeErr(n, path, "a number of cores")
			}
			v, perr := strconv.ParseFloat(n.Value, 64)
			if perr != nil || v < 0.01 || v > MaxCPU {
				return ps.errf(n.Line, path, "%s: give a number of cores from 0.01 to %d", quote(n.Value), MaxCPU)
			}
			pol.Limits.CPU = v
			return nil
		}})
	return err
}

// bytes parses a byte count: a plain integer or a string with a K, M or G
// suffix (powers of 1024).
func (ps *parser) bytes(n *yaml.Node, path string) (int64, *Error) {
	if n.Kind == yaml.ScalarNode && n.ShortTag() == "!!int" {
		return ps.intRange(n, path, MinMemory, MaxMemory)
	}
	s, err := ps.str(n, path, "a number of bytes (e.g. 536870912 or 512M)")
	if err != nil {
		return 0, err
	}
	v, ok := ParseBytes(s)
	if !ok || v < MinMemory || v > MaxMemory {
		return 0, ps.errf(n.Line, path, "%s: give bytes from 1M to 1048576G, a plain integer or with a K, M or G suffix", quote(s))
	}
	return v, nil
}

// ParseBytes parses "N", "NK", "NM" or "NG" (powers of 1024).
func ParseBytes(s string) (int64, bool) {
	mult := int64(1)
	if s == "" {
		return 0, false
	}
	switch strings.ToUpper(s[len(s)-1:]) {
	case "K":
		mult = 1 << 10
	case "M":
		mult = 1 << 20
	case "G":
		mult = 1 << 30
	}
	if mult > 1 {
		s = s[:len(s)-1]
	}
	if s == "" || strings.Trim(s, "0123456789") != "" || (len(s) > 1 && s[0] == '0') {
		return 0, false
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n <= 0 || n > (1<<62)/mult {
		return 0, false
	}
	return n * mult, true
}
