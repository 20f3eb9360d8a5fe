package cgroup

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// mountInfoPath is the file Mount reads. It is a variable only so that
// in-package tests can point it elsewhere.
var mountInfoPath = "/proc/self/mountinfo"

// ErrNoMount is the error Mount (and every function needing the mount)
// returns when no cgroup v2 hierarchy is mounted.
var ErrNoMount = errors.New("no cgroup v2 mount found in /proc/self/mountinfo: mount one with `mount -t cgroup2 none /sys/fs/cgroup`")

// mountEntry is one parsed line of /proc/self/mountinfo (see proc(5)).
type mountEntry struct {
	Major, Minor uint32
	Root         string // root of the mount within its filesystem (field 4)
	MountPoint   string // field 5
	FSType       string
	Source       string
}

// parseMountInfo parses the mountinfo format:
//
//	36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue
//	(1)(2)(3)   (4)   (5)      (6)      (7)   (8) (9)   (10)         (11)
//
// Field 7 is a variable-length list of optional fields terminated by "-".
// Paths have space, tab, newline and backslash escaped as \ooo octal.
func parseMountInfo(r io.Reader) ([]mountEntry, error) {
	var out []mountEntry
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64*1024), 1024*1024)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if line == "" {
			continue
		}
		f := strings.Split(line, " ")
		if len(f) < 10 {
			return nil, fmt.Errorf("mountinfo line %d: too few fields: %q", n, line)
		}
		sep := -1
		for i := 6; i < len(f); i++ {
			if f[i] == "-" {
				sep = i
				break
			}
		}
		if sep < 0 || sep+2 >= len(f) {
			return nil, fmt.Errorf("mountinfo line %d: missing optional-field separator: %q", n, line)
		}
		majS, minS, ok := strings.Cut(f[2], ":")
		if !ok {
			return nil, fmt.Errorf("mountinfo line %d: bad major:minor %q", n, f[2])
		}
		maj, err1 := strconv.ParseUint(majS, 10, 32)
		mnr, err2 := strconv.ParseUint(minS, 10, 32)
		if err1 != nil || err2 != nil {
			return nil, fmt.Errorf("mountinfo line %d: bad major:minor %q", n, f[2])
		}
		out = append(out, mountEntry{
			Major:      uint32(maj),
			Minor:      uint32(mnr),
			Root:       unescapeOctal(f[3]),
			MountPoint: unescapeOctal(f[4]),
			FSType:     unescapeOctal(f[sep+1]),
			Source:     unescapeOctal(f[sep+2]),
		})
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return out, nil
}

// unescapeOctal decodes the \ooo escapes the kernel uses in mountinfo
// (show_path/mangle: space, tab, newline, backslash, ...).
func unescapeOctal(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) && isOctal(s[i+1]) && isOctal(s[i+2]) && isOctal(s[i+3]) {
			v := (s[i+1]-'0')<<6 | (s[i+2]-'0')<<3 | (s[i+3] - '0')
			b.WriteByte(v)
			i += 3
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func isOctal(c byte) bool { return c >= '0' && c <= '7' }

// findMount returns the cgroup2 mount to use: the first cgroup2 entry whose
// mount root is "/" (a whole hierarchy, not a bind mount of a subtree) and
// whose mount point really is a cgroup2 filesystem now (it is not hidden by
// a later mount on top). Failing that, the first visible cgroup2 entry.
func findMount() (mountEntry, error) {
	f, err := os.Open(mountInfoPath)
	if err != nil {
		return mountEntry{}, fmt.Errorf("reading mount table: %w", err)
	}
	defer f.Close()
	entries, err := parseMountInfo(f)
	if err != nil {
		return mountEntry{}, fmt.Errorf("parsing %s: %w", mountInfoPath, err)
	}
	var fallback *mountEntry
	for i := range entries {
		e := &entries[i]
		if e.FSType != "cgroup2" || !isCgroup2(e.MountPoint) {
			continue
		}
		if e.Root == "/" {
			return *e, nil
		}
		if fallback == nil {
			fallback = e
		}
	}
	if fallback != nil {
		return *fallback, nil
	}
	return mountEntry{}, ErrNoMount
}

func isCgroup2(path string) bool {
	var st unix.Statfs_t
	return unix.Statfs(path, &st) == nil && st.Type == unix.CGROUP2_SUPER_MAGIC
}
