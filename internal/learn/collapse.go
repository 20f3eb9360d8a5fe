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
	files := r.Files()
	paths := make([]string, 0, len(files))
	for p := range files {
		paths = append(paths, p)
	}
	sort.Strings(paths)

	type obs struct {
		use       FileUse
		want      policy.Access
		createdIn bool // files were created in this directory
	}
	need := map[string]*obs{}
	var sens []entry
	add := func(p string, u FileUse, want policy.Access, createdIn bool) {
		if o := need[p]; o != nil {
			o.want |= want
			o.use.Opens += u.Opens
			o.use.Changes += u.Changes
			o.use.Dir = o.use.Dir || u.Dir
			o.createdIn = o.createdIn || createdIn
			return
		}
		need[p] = &obs{use: u, want: want, createdIn: createdIn}
	}
	// covered: the policy already allows want on p (listing a directory
	// needs a rule over it as a directory, not a rule for a file there).
	byPath := map[string]policy.FileRule{}
	for _, r := range cov.FileRules() {
		byPath[r.Path] = r
	}
	covered := func(p string, want policy.Access, dir bool) bool {
		for c := p; ; c = path.Dir(c) {
			if r, ok := byPath[c]; ok && (r.WantDir || !dir || c != p) {
				return r.Access&want == want
			}
			if c == "/" {
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
			res.Sensitive = append(res.Sensitive, fmt.Sprintf("%s (%s): %s", p, why, accessWords(want)))
			sens = append(sens, entry{line: fileLine(p, u.Dir, want), sortKey: p,
				comment: seen(u.Opens, u.Changes, 1, want, p), warn: "sensitive: " + why})
			continue
		}
		if u.Created {
			// Creating a file is a right on its directory.
			if dir := path.Dir(p); !covered(dir, policy.AccessWrite, true) {
				add(dir, FileUse{}, policy.AccessWrite, true)
			}
		}
		if covered(p, want, u.Dir) {
			res.Covered++
			continue
		}
		add(p, u, want, false)
	}

	// Directories: which were used, bottom-up.
	type dirInfo struct {
		entries map[string]bool
		listed  bool // listed or created in
		created bool
		used    bool
	}
	dirs := map[string]*dirInfo{}
	getDir := func(d string) *dirInfo {
		di := dirs[d]
		if di == nil {
			di = &dirInfo{entries: map[string]bool{}}
			dirs[d] = di
		}
		return di
	}
	touchy := map[string]bool{} // ancestors of sensitive paths the run touched
	for _, s := range sens {
		for d := path.Dir(s.sortKey); ; d = path.Dir(d) {
			touchy[d] = true
			if d == "/" {
				break
			}
		}
	}
	for p, ob := range need {
		if ob.use.Dir || ob.createdIn {
			di := getDir(p)
			di.listed = di.listed || ob.use.Dir
			di.created = di.created || ob.createdIn
		}
		for c := p; c != "/"; c = path.Dir(c) {
			getDir(path.Dir(c))
		}
		if p != "/" {
			getDir(path.Dir(p)).entries[p] = true
		}
	}
	touched := map[string]bool{} // every path used and its ancestors
	for p := range need {
		for c := p; ; c = path.Dir(c) {
			if touched[c] {
				break
			}
			touched[c] = true
			if c == "/" {
				break
			}
		}
	}
	for _, s := range sens {
		for c := s.sortKey; c != "/"; c = path.Dir(c) {
			touched[c] = true
		}
	}
	order := make([]string, 0, len(dirs))
	for d := range dirs {
		order = append(order, d)
	}
	sort.Slice(order, func(i, j int) bool {
		di, dj := depth(order[i]), depth(order[j])
		if di != dj {
			return di > dj
		}
		return order[i] < order[j]
	})
	for _, d := range order {
		di := dirs[d]
		di.used = di.listed || di.created || len(di.entries) >= minEntries && allEntered(o.Subdirs, d, touched)
		if di.used && d != "/" {
			getDir(path.Dir(d)).entries[d] = true
		}
	}
	allowed := func(d string) (ok bool, widen string) {
		di := dirs[d]
		switch {
		case d == "/" || sensitiveAncestor(d) || touchy[d]:
			return false, ""
		case depth(d) <= 1:
			if di.created {
				return true, fmt.Sprintf("%s/: the run created files directly in this shared directory, which needs w on all of it", d)
			}
			return false, ""
		}
		return true, ""
	}
	chosen := map[string]bool{}
	sort.Slice(order, func(i, j int) bool {
		di, dj := depth(order[i]), depth(order[j])
		if di != dj {
			return di < dj
		}
		return order[i] < order[j]
	})
	var fileEntries []entry
	for _, d := range order {
		if !dirs[d].used || underChosen(d, chosen) {
			continue
		}
		ok, widen := allowed(d)
		if !ok {
			continue
		}
		chosen[d] = true
		if widen != "" {
			res.Widened = append(res.Widened, widen)
		}
	}
	// Subtree rules: the union of what was used beneath.
	type agg struct {
		want    policy.Access
		opens   int
		changes int
		n       int
		example string
	}
	sub := map[string]*agg{}
	var ownPaths []string
	for p := range need {
		ownPaths = append(ownPaths, p)
	}
	sort.Strings(ownPaths)
	for _, p := range ownPaths {
		ob := need[p]
		top := ""
		if chosen[p] {
			top = p
		}
		for c := path.Dir(p); top == "" && c != "/"; c = path.Dir(c) {
			if chosen[c] && !underChosen(c, chosen) {
				top = c
			}
		}
		if top == "" && chosen["/"] {
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
				res.Sensitive = append(res.Sensitive, fmt.Sprintf("%s/ (%s): %s", p, what, accessWords(ob.want)))
				c := seen(ob.use.Opens, ob.use.Changes, 1, ob.want, p)
				if ob.createdIn {
					c += "; files created in it"
				}
				sens = append(sens, entry{line: fileLine(p, true, ob.want), sortKey: p, comment: c, warn: what})
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
		c := seen(a.opens, a.changes, a.n, a.want, ex)
		if dirs[d] != nil && dirs[d].created {
			c += "; files created in it"
		}
		fileEntries = append(fileEntries, entry{line: fileLine(d, true, a.want), sortKey: d, comment: c})
	}
	sort.Slice(fileEntries, func(i, j int) bool { return fileEntries[i].sortKey < fileEntries[j].sortKey })
	sort.Slice(sens, func(i, j int) bool { return sens[i].sortKey < sens[j].sortKey })
	res.Files = len(fileEntries)
	return append(fileEntries, sens...)
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
