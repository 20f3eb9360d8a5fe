package learn

import (
	"fmt"
	"path"
	"regexp"
	"sort"
	"strings"

	"github.com/assaymcp/assay/internal/policy"
)

// The collapse rule (README: "Write a policy by watching a run"):
//
//   - a directory the run listed, or in which it created a file, is used;
//   - a directory is used when at least two of its entries were used
//     (files opened, created or executed there, or used directories) and
//     the run touched something beneath every one of its subdirectories
//     (listed when the policy is written): a rule never spans a subtree
//     the run did not enter (unused files next to used ones are covered);
//   - the topmost used directory of a branch becomes one subtree rule
//     (DIR/), with the union of the access letters used anywhere beneath
//     it; paths outside every such directory get a rule of their own;
//   - never a subtree rule over /, a top-level directory (/etc, /tmp, ...)
//     unless the run created files directly in it, a home directory,
//     ~/.config, or a directory holding a sensitive path the run touched:
//     their entries get rules of their own.
//
// So a rule never widens into a parent the run did not use in at least
// two places.
const minEntries = 2

// fileEntries are the file rules (the collapse rule above), sensitive
// paths last (written commented out); it counts them in res.
func (r *Recorder) fileEntries(cov *policy.Policy, o Options, res *Result) []entry {
	c := &collapse{o: o, res: res, need: map[string]*obs{}, dirs: map[string]*dirInfo{}, chosen: map[string]bool{}}
	c.observed(r.Files(), cov)
	c.useDirs()
	c.choose()
	return c.entries()
}

// collapse holds the collapse rule's state, phase by phase: what the run
// needs that the policy does not cover (observed), which directories were
// used (useDirs), which of them become subtree rules (choose), and the
// rules written (entries).
type collapse struct {
	o      Options
	res    *Result
	need   map[string]*obs
	sens   []entry
	dirs   map[string]*dirInfo
	touchy map[string]bool // ancestors of sensitive paths the run touched
	order  []string        // the directories, deepest first
	chosen map[string]bool // the directories that get subtree rules
}

type obs struct {
	use       FileUse
	want      policy.Access
	createdIn bool // files were created in this directory
}

type dirInfo struct {
	entries map[string]bool
	listed  bool // listed or created in
	created bool
	used    bool
}

func (c *collapse) add(p string, u FileUse, want policy.Access, createdIn bool) {
	if o := c.need[p]; o != nil {
		o.want |= want
		o.use.Opens += u.Opens
		o.use.Changes += u.Changes
		o.use.Dir = o.use.Dir || u.Dir
		o.createdIn = o.createdIn || createdIn
		return
	}
	c.need[p] = &obs{use: u, want: want, createdIn: createdIn}
}

// observed fills need with what the run used that cov does not allow,
// and sens with the sensitive paths it touched.
func (c *collapse) observed(files map[string]FileUse, cov *policy.Policy) {
	paths := make([]string, 0, len(files))
	for p := range files {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	// covered: the policy already allows want on p (listing a directory
	// needs a rule over it as a directory, not a rule for a file there).
	byPath := map[string]policy.FileRule{}
	for _, r := range cov.FileRules() {
		byPath[r.Path] = r
	}
	covered := func(p string, want policy.Access, dir bool) bool {
		for x := p; ; x = path.Dir(x) {
			if r, ok := byPath[x]; ok && (r.WantDir || !dir || x != p) {
				return r.Access&want == want
			}
			if x == "/" {
				return cov.FileDefault == policy.DefaultAllow
			}
		}
	}
	for _, p := range paths {
		u := files[p]
		want := u.Access
		if u.Dir {
			want |= policy.AccessRead
		}
		if want&policy.AccessRead != 0 && sharedObject(p) {
			want |= policy.AccessExec // mapped for execution by the loader
		}
		if why := Sensitive(p); why != "" {
			c.res.Sensitive = append(c.res.Sensitive, fmt.Sprintf("%s (%s): %s", p, why, accessWords(want)))
			c.sens = append(c.sens, entry{line: fileLine(p, u.Dir, want), sortKey: p,
				comment: seen(u.Opens, u.Changes, 1, want, p), warn: "sensitive: " + why})
			continue
		}
		if u.Created {
			// Creating a file is a right on its directory.
			if dir := path.Dir(p); !covered(dir, policy.AccessWrite, true) {
				c.add(dir, FileUse{}, policy.AccessWrite, true)
			}
		}
		if covered(p, want, u.Dir) {
			c.res.Covered++
			continue
		}
		c.add(p, u, want, false)
	}
}

func (c *collapse) getDir(d string) *dirInfo {
	di := c.dirs[d]
	if di == nil {
		di = &dirInfo{entries: map[string]bool{}}
		c.dirs[d] = di
	}
	return di
}

// useDirs decides, bottom-up, which directories the run used.
func (c *collapse) useDirs() {
	c.touchy = map[string]bool{}
	for _, s := range c.sens {
		for d := path.Dir(s.sortKey); ; d = path.Dir(d) {
			c.touchy[d] = true
			if d == "/" {
				break
			}
		}
	}
	for p, ob := range c.need {
		if ob.use.Dir || ob.createdIn {
			di := c.getDir(p)
			di.listed = di.listed || ob.use.Dir
			di.created = di.created || ob.createdIn
		}
		for x := p; x != "/"; x = path.Dir(x) {
			c.getDir(path.Dir(x))
		}
		if p != "/" {
			c.getDir(path.Dir(p)).entries[p] = true
		}
	}
	touched := map[string]bool{} // every path used and its ancestors
	for p := range c.need {
		for x := p; ; x = path.Dir(x) {
			if touched[x] {
				break
			}
			touched[x] = true
			if x == "/" {
				break
			}
		}
	}
	for _, s := range c.sens {
		for x := s.sortKey; x != "/"; x = path.Dir(x) {
			touched[x] = true
		}
	}
	c.order = make([]string, 0, len(c.dirs))
	for d := range c.dirs {
		c.order = append(c.order, d)
	}
	sort.Slice(c.order, func(i, j int) bool {
		di, dj := depth(c.order[i]), depth(c.order[j])
		if di != dj {
			return di > dj
		}
		return c.order[i] < c.order[j]
	})
	for _, d := range c.order {
		di := c.dirs[d]
		di.used = di.listed || di.created || len(di.entries) >= minEntries && allEntered(c.o.Subdirs, d, touched)
		if di.used && d != "/" {
			c.getDir(path.Dir(d)).entries[d] = true
		}
	}
}

// allowed says whether d may get a subtree rule, and why it widens when
// it does.
func (c *collapse) allowed(d string) (ok bool, widen string) {
	di := c.dirs[d]
	switch {
	case d == "/" || sensitiveAncestor(d) || c.touchy[d]:
		return false, ""
	case depth(d) <= 1:
		if di.created {
			return true, fmt.Sprintf("%s/: the run created files directly in this shared directory, which needs w on all of it", d)
		}
		return false, ""
	}
	return true, ""
}

// choose picks the topmost used directories of each branch that may get
// subtree rules.
func (c *collapse) choose() {
	sort.Slice(c.order, func(i, j int) bool {
		di, dj := depth(c.order[i]), depth(c.order[j])
		if di != dj {
			return di < dj
		}
		return c.order[i] < c.order[j]
	})
	for _, d := range c.order {
		if !c.dirs[d].used || underChosen(d, c.chosen) {
			continue
		}
		ok, widen := c.allowed(d)
		if !ok {
			continue
		}
		c.chosen[d] = true
		if widen != "" {
			c.res.Widened = append(c.res.Widened, widen)
		}
	}
}

// entries writes the rules: a subtree rule per chosen directory with the
// union of what was used beneath it, a rule of its own for every other
// path, the sensitive ones last.
func (c *collapse) entries() []entry {
	type agg struct {
		want    policy.Access
		opens   int
		changes int
		n       int
		example string
	}
	sub := map[string]*agg{}
	var ownPaths []string
	for p := range c.need {
		ownPaths = append(ownPaths, p)
	}
	sort.Strings(ownPaths)
	var fileEntries []entry
	for _, p := range ownPaths {
		ob := c.need[p]
		top := ""
		if c.chosen[p] {
			top = p
		}
		for x := path.Dir(p); top == "" && x != "/"; x = path.Dir(x) {
			if c.chosen[x] && !underChosen(x, c.chosen) {
				top = x
			}
		}
		if top == "" && c.chosen["/"] {
			top = "/"
		}
		if top == "" {
			if ob.use.Dir || ob.createdIn {
				// Listing, or creating files in, needs a subtree rule
				// over a directory that may not get one.
				what := "listing this directory needs a rule over everything beneath it"
				if ob.createdIn {
					what = "creating files in this directory needs w on everything beneath it"
				}
				c.res.Sensitive = append(c.res.Sensitive, fmt.Sprintf("%s/ (%s): %s", p, what, accessWords(ob.want)))
				cm := seen(ob.use.Opens, ob.use.Changes, 1, ob.want, p)
				if ob.createdIn {
					cm += "; files created in it"
				}
				c.sens = append(c.sens, entry{line: fileLine(p, true, ob.want), sortKey: p, comment: cm, warn: what})
				continue
			}
			fileEntries = append(fileEntries, entry{line: fileLine(p, false, ob.want), sortKey: p, comment: seen(ob.use.Opens, ob.use.Changes, 1, ob.want, p)})
			continue
		}
		a := sub[top]
		if a == nil {
			a = &agg{}
			sub[top] = a
		}
		a.want |= ob.want
		a.opens += ob.use.Opens
		a.changes += ob.use.Changes
		if ob.use.Opens+ob.use.Changes > 0 && (p != top || !ob.use.Dir) {
			a.n++
			if a.example == "" && p != top {
				a.example = p
			}
		}
	}
	for d, a := range sub {
		ex := a.example
		if ex == "" {
			ex = d + "/"
		}
		cm := seen(a.opens, a.changes, a.n, a.want, ex)
		if c.dirs[d] != nil && c.dirs[d].created {
			cm += "; files created in it"
		}
		fileEntries = append(fileEntries, entry{line: fileLine(d, true, a.want), sortKey: d, comment: cm})
	}
	sort.Slice(fileEntries, func(i, j int) bool { return fileEntries[i].sortKey < fileEntries[j].sortKey })
	sort.Slice(c.sens, func(i, j int) bool { return c.sens[i].sortKey < c.sens[j].sortKey })
	c.res.Files = len(fileEntries)
	return append(fileEntries, c.sens...)
}

var sharedObjectRE = regexp.MustCompile(`\.so(\.[0-9.]+)?$|\.node$`)

// sharedObject says whether a path looks like a library the loader maps
// for execution (the trace path sees the open, not the mapping).
func sharedObject(p string) bool { return sharedObjectRE.MatchString(path.Base(p)) }

// allEntered: the run touched something beneath every subdirectory of dir.
func allEntered(subdirs func(string) ([]string, bool), dir string, touched map[string]bool) bool {
	if subdirs == nil {
		return true
	}
	names, ok := subdirs(dir)
	if !ok {
		return true
	}
	for _, n := range names {
		if !touched[path.Join(dir, n)] {
			return false
		}
	}
	return true
}

func depth(p string) int {
	if p == "/" {
		return 0
	}
	return strings.Count(p, "/")
}

func underChosen(p string, chosen map[string]bool) bool {
	for c := path.Dir(p); ; c = path.Dir(c) {
		if chosen[c] {
			return true
		}
		if c == "/" {
			return false
		}
	}
}
