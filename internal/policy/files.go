// The files section: files.deny paths.

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
	if isNull(n) {
		return nil
	}
	fs, err := ps.fields(n, path, "deny")
	if err != nil {
		return err
	}
	for _, f := range fs {
		items, err := ps.list(f.val, f.path)
		if err != nil {
			return err
		}
		if pol.FileDeny, err = ps.paths(items, f.path); err != nil {
			return err
		}
	}
	return nil
}

func (ps *parser) paths(items []*yaml.Node, path string) ([]FileRule, *Error) {
	out := make([]FileRule, 0, len(items))
	seen := map[string]int{}
	for i, it := range items {
		ip := index(path, i)
		vn, vp, idn, idp, err := ps.entry(it, ip, "path", "a path string")
		if err != nil {
			return nil, err
		}
		s, err := ps.str(vn, vp, "a path string")
		if err != nil {
			return nil, err
		}
		p, dir, perr := CheckPath(s)
		if perr != nil {
			return nil, ps.errf(vn.Line, vp, "%s", perr)
		}
		if line, dup := seen[p]; dup {
			return nil, ps.errf(vn.Line, vp, "path %s already listed at line %d", p, line)
		}
		seen[p] = vn.Line
		id, err := ps.optID(idn, idp)
		if err != nil {
			return nil, err
		}
		out = append(out, FileRule{ID: id, Path: p, WantDir: dir, Line: it.Line})
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
