// The files section: files.deny paths (version 1); default, baseline,
// allow and deny (version 2).

package policy

import (
	"fmt"
	"path"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"go.yaml.in/yaml/v3"
)

func (ps *parser) files(n *yaml.Node, path string, pol *Policy) *Error {
	_, err := ps.walk(n, path, pol, section{name: "deny", parse: listOf(func(ps *parser, items []*yaml.Node, path string, pol *Policy) (err *Error) {
		pol.FileDeny, err = ps.paths(items, path, false, map[string]int{}, "path %s already listed at line %d")
		return err
	})})
	return err
}

func (ps *parser) filesV2(n *yaml.Node, path string, pol *Policy) *Error {
	seen := map[string]int{} // the paths of both lists: one rule per path
	fs, err := ps.walk(n, path, pol,
		section{name: "default", required: defaultRequired, parse: func(ps *parser, n *yaml.Node, path string, pol *Policy) (err *Error) {
			pol.FileDefault, err = ps.defaultField(n, path)
			return err
		}},
		section{name: "baseline", parse: (*parser).baseline},
		section{name: "allow", parse: listOf(func(ps *parser, items []*yaml.Node, path string, pol *Policy) (err *Error) {
			pol.FileAllow, err = ps.paths(items, path, true, seen, pathHasRule)
			return err
		})},
		section{name: "deny", parse: listOf(func(ps *parser, items []*yaml.Node, path string, pol *Policy) (err *Error) {
			pol.FileDeny, err = ps.paths(items, path, false, seen, pathHasRule)
			return err
		})})
	if err != nil {
		return err
	}
	pol.FilesSet = true
	base := fieldNamed(fs, "baseline")
	if base == nil && pol.FileDefault == DefaultDeny {
		pol.Baseline = BaselineRuntime
	}
	if base != nil && pol.Baseline == BaselineRuntime && pol.FileDefault == DefaultAllow {
		return ps.errf(base.val.Line, base.path, "the runtime baseline only applies with default: deny (with default: allow everything it lists is allowed anyway)")
	}
	return nil
}

// pathHasRule is version 2's error for a path given twice.
const pathHasRule = "path %s already has a rule at line %d (one rule per path)"

func (ps *parser) baseline(n *yaml.Node, path string, pol *Policy) *Error {
	i, err := ps.oneOf(n, path, "baseline", "runtime", "none")
	pol.Baseline = [...]Baseline{BaselineRuntime, BaselineNone}[i]
	return err
}

// paths parses files.allow (allow true, version 2) or files.deny entries.
// seen holds the paths already listed (in version 2, of both lists: one
// rule per path); dup is the error for a path given again (its path and the
// line of the first).
func (ps *parser) paths(items []*yaml.Node, path string, allow bool, seen map[string]int, dup string) ([]FileRule, *Error) {
	out := make([]FileRule, 0, len(items))
	for i, it := range items {
		ip := index(path, i)
		var vn, an, idn *yaml.Node
		vp, ap, idp := ip, "", ""
		switch it.Kind {
		case yaml.ScalarNode:
			vn = it
		case yaml.MappingNode:
			known := []string{"path", "id"}
			if allow {
				known = []string{"path", "access", "id"}
			}
			fs, err := ps.fields(it, ip, known...)
			if err != nil {
				return nil, err
			}
			for _, f := range fs {
				switch f.name {
				case "path":
					vn, vp = f.val, f.path
				case "access":
					an, ap = f.val, f.path
				case "id":
					idn, idp = f.val, f.path
				}
			}
			if vn == nil {
				return nil, ps.errf(it.Line, join(ip, "path"), "required field missing")
			}
		default:
			want := "a path string or a mapping {path: ..., id: ...}"
			if allow {
				want = "a path string or a mapping {path: ..., access: ..., id: ...}"
			}
			return nil, ps.typeErr(it, ip, want)
		}
		s, err := ps.str(vn, vp, "a path string")
		if err != nil {
			return nil, err
		}
		p, dir, perr := CheckPath(s)
		if perr != nil {
			return nil, ps.errf(vn.Line, vp, "%s", perr)
		}
		if line, given := seen[p]; given {
			return nil, ps.errf(vn.Line, vp, dup, p, line)
		}
		seen[p] = vn.Line
		acc := Access(0)
		if allow {
			acc = AccessRead
			if an != nil {
				as, err := ps.str(an, ap, "r, w, x or a combination such as rw or rx")
				if err != nil {
					return nil, err
				}
				a, ok := ParseAccess(as)
				if !ok {
					return nil, ps.errf(an.Line, ap, "access %s: use a combination of r, w and x (each at most once), such as r, rw, rx or rwx", quote(as))
				}
				acc = a
			}
		}
		id, err := ps.optID(idn, idp)
		if err != nil {
			return nil, err
		}
		out = append(out, FileRule{ID: id, Path: p, WantDir: dir, Access: acc, Line: it.Line})
	}
	return out, nil
}

// PathError is the error CheckPath returns: what is wrong with a path.
type PathError struct {
	Path   string // the path as given
	Reason string // what is wrong and what to write instead, e.g. "is not absolute"
	shown  string // the path as the message shows it ("" to leave it out)
}

// Error formats the error as "path SHOWN REASON", e.g.
// `path /a/../b is not clean; write /b`.
func (e *PathError) Error() string {
	if e.shown == "" {
		return "path " + e.Reason
	}
	return "path " + e.shown + " " + e.Reason
}

// CheckPath validates a files.deny path: non-empty, at most [MaxPathLen]
// bytes, valid UTF-8 without control characters, absolute and clean (no
// ".", ".." or empty components). It returns the path without its trailing
// slash (except "/") and whether it had one. Every error is a *PathError.
// It is the one definition of a valid policy path: the policy parser and
// the resolver (package resolve) both use it.
func CheckPath(s string) (clean string, wantDir bool, err error) {
	bad := func(shown, format string, args ...any) (string, bool, error) {
		return "", false, &PathError{Path: s, Reason: fmt.Sprintf(format, args...), shown: shown}
	}
	if s == "" {
		return bad("", "is empty")
	}
	if len(s) > MaxPathLen {
		return bad("", "is %d bytes long; the limit is %d", len(s), MaxPathLen)
	}
	for i, r := range s {
		if r == utf8.RuneError {
			if _, size := utf8.DecodeRuneInString(s[i:]); size == 1 {
				return bad(strconv.Quote(s), "is not valid UTF-8")
			}
		}
		if unicode.IsControl(r) {
			return bad(strconv.Quote(s), "contains a control character")
		}
	}
	if s[0] != '/' {
		return bad(quote(s), "is not absolute")
	}
	if s == "/" {
		return "/", true, nil
	}
	base, dir := s, false
	if strings.HasSuffix(s, "/") {
		base, dir = s[:len(s)-1], true
	}
	if clean := path.Clean(base); clean != base || base == "/" {
		want := clean
		if dir && clean != "/" {
			want += "/"
		}
		return bad(s, "is not clean; write %s", want)
	}
	return base, dir, nil
}
