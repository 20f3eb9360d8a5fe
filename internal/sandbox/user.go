package sandbox

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// # Who the command runs as
//
// `--user USER[:GROUP]` names the user (and group) by name or number. A
// user name, or a number found in /etc/passwd, brings its primary group,
// its supplementary groups (the /etc/group entries that list the name) and
// its home directory. A number that is not in /etc/passwd gets the group
// nogroup (65534) unless :GROUP is given, no supplementary groups, and HOME=/.
// The files are parsed directly (no NSS, no cgo): users that exist only in
// LDAP or similar must be given as numbers.
//
// Without --user: the user that invoked sudo (SUDO_UID, SUDO_GID) or pkexec
// (PKEXEC_UID); when root runs assay directly, nobody:nogroup (65534), said
// on stderr. Root needs an explicit --user root (and is then NOT CONTAINED).

const nobodyID = 65534

var (
	passwdFile = "/etc/passwd"
	groupFile  = "/etc/group"
)

// Cred is the identity the command gets.
type Cred struct {
	UID, GID  uint32
	Groups    []uint32
	Name      string // user name ("" when unknown)
	GroupName string
	Home      string
}

func (c Cred) String() string {
	u := strconv.FormatUint(uint64(c.UID), 10)
	if c.Name != "" {
		u = c.Name + " (" + u + ")"
	}
	g := strconv.FormatUint(uint64(c.GID), 10)
	if c.GroupName != "" {
		g = c.GroupName + " (" + g + ")"
	}
	s := "user " + u + ", group " + g
	if len(c.Groups) > 0 {
		var gs []string
		for _, x := range c.Groups {
			gs = append(gs, strconv.FormatUint(uint64(x), 10))
		}
		s += ", supplementary groups " + strings.Join(gs, ",")
	}
	return s
}

// Root reports whether the command runs as uid 0.
func (c Cred) Root() bool { return c.UID == 0 }

type pwEntry struct {
	name     string
	uid, gid uint32
	home     string
}

func readColon(path string, fields int, fn func(f []string)) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		l := sc.Text()
		if l == "" || l[0] == '#' || l[0] == '+' || l[0] == '-' {
			continue
		}
		p := strings.Split(l, ":")
		if len(p) < fields {
			continue
		}
		fn(p)
	}
	return sc.Err()
}

func lookupUser(match func(name string, uid uint32) bool) (pwEntry, bool) {
	var out pwEntry
	found := false
	_ = readColon(passwdFile, 7, func(f []string) {
		if found {
			return
		}
		uid, err1 := strconv.ParseUint(f[2], 10, 32)
		gid, err2 := strconv.ParseUint(f[3], 10, 32)
		if err1 != nil || err2 != nil || !match(f[0], uint32(uid)) {
			return
		}
		out = pwEntry{name: f[0], uid: uint32(uid), gid: uint32(gid), home: f[5]}
		found = true
	})
	return out, found
}

func lookupGroup(match func(name string, gid uint32) bool) (string, uint32, bool) {
	var name string
	var id uint32
	found := false
	_ = readColon(groupFile, 3, func(f []string) {
		if found {
			return
		}
		gid, err := strconv.ParseUint(f[2], 10, 32)
		if err != nil || !match(f[0], uint32(gid)) {
			return
		}
		name, id, found = f[0], uint32(gid), true
	})
	return name, id, found
}

// supplementary lists the groups whose member lists name user.
func supplementary(user string, primary uint32) []uint32 {
	var out []uint32
	seen := map[uint32]bool{primary: true}
	_ = readColon(groupFile, 4, func(f []string) {
		gid, err := strconv.ParseUint(f[2], 10, 32)
		if err != nil || seen[uint32(gid)] {
			return
		}
		for _, m := range strings.Split(f[3], ",") {
			if strings.TrimSpace(m) == user {
				seen[uint32(gid)] = true
				out = append(out, uint32(gid))
				return
			}
		}
	})
	return out
}

func parseID(s string) (uint32, bool) {
	n, err := strconv.ParseUint(s, 10, 32)
	if err != nil || n == 0xffffffff {
		return 0, false
	}
	return uint32(n), true
}

// ParseUser resolves --user USER[:GROUP].
func ParseUser(spec string) (Cred, error) {
	us, gs, hasGroup := strings.Cut(spec, ":")
	if us == "" || (hasGroup && gs == "") {
		return Cred{}, fmt.Errorf("--user %q: give USER or USER:GROUP (names or numbers)", spec)
	}
	var c Cred
	if n, ok := parseID(us); ok {
		if e, ok := lookupUser(func(_ string, uid uint32) bool { return uid == n }); ok {
			c = Cred{UID: n, GID: e.gid, Name: e.name, Home: e.home, Groups: supplementary(e.name, e.gid)}
		} else {
			c = Cred{UID: n, GID: nobodyID, Home: "/"}
		}
	} else {
		e, ok := lookupUser(func(name string, _ uint32) bool { return name == us })
		if !ok {
			return Cred{}, fmt.Errorf("--user %q: no user %q in %s (give a number for users outside it)", spec, us, passwdFile)
		}
		c = Cred{UID: e.uid, GID: e.gid, Name: e.name, Home: e.home, Groups: supplementary(e.name, e.gid)}
	}
	if hasGroup {
		if n, ok := parseID(gs); ok {
			c.GID = n
		} else {
			_, gid, ok := lookupGroup(func(name string, _ uint32) bool { return name == gs })
			if !ok {
				return Cred{}, fmt.Errorf("--user %q: no group %q in %s (give a number for groups outside it)", spec, gs, groupFile)
			}
			c.GID = gid
		}
	}
	c.GroupName, _, _ = lookupGroup(func(_ string, gid uint32) bool { return gid == c.GID })
	return c, nil
}

// DefaultUser is the identity used without --user, from the environment
// of assay (getenv): the sudo or pkexec caller, else nobody:nogroup. note
// is what to say on stderr about the choice ("" for none).
func DefaultUser(getenv func(string) string) (c Cred, note string, err error) {
	if os.Geteuid() != 0 {
		// Not root: the command runs as assay's own (real) identity.
		c, err := ParseUser(strconv.Itoa(os.Getuid()) + ":" + strconv.Itoa(os.Getgid()))
		return c, "", err
	}
	if u := getenv("SUDO_UID"); u != "" {
		spec := u
		if g := getenv("SUDO_GID"); g != "" {
			spec += ":" + g
		}
		c, err := ParseUser(spec)
		if err != nil {
			return c, "", fmt.Errorf("SUDO_UID/SUDO_GID: %w", err)
		}
		return c, "", nil
	}
	if u := getenv("PKEXEC_UID"); u != "" {
		c, err := ParseUser(u)
		if err != nil {
			return c, "", fmt.Errorf("PKEXEC_UID: %w", err)
		}
		return c, "", nil
	}
	c, err = ParseUser(strconv.Itoa(nobodyID) + ":" + strconv.Itoa(nobodyID))
	return c, "runs as nobody:nogroup (65534:65534): assay was started as root without sudo or pkexec; choose another identity with --user USER[:GROUP]", err
}
