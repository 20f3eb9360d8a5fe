package learn

import (
	"fmt"
	"net/netip"
	"path"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/assaymcp/assay/internal/policy"
)

// Options say how to write the policy.
type Options struct {
	// Base, when set, is the policy to start from (--policy BASE): only
	// what it does not allow yet is added. BaseText is its file's text.
	Base     *policy.Policy
	BaseText []byte
	// Argv is the command that was observed (named in the header).
	Argv []string
	// Hosts: write network entries by host name where the address came
	// from a lookup (the policy format has host entries).
	Hosts bool
	// Upstream, when set, is written as the policy's dns.upstream when it
	// has host entries (the resolvers the learned run used).
	Upstream []netip.AddrPort
	// Subdirs, when set, lists a directory's subdirectories as they are
	// when the policy is written (see the collapse rule); ok false when it
	// cannot be read. Nil: not considered.
	Subdirs func(dir string) (names []string, ok bool)
}

// Result is the written policy and what the summary says about it.
type Result struct {
	Policy []byte
	// Sensitive lists the sensitive paths and addresses the run touched,
	// one line each (written commented out in the policy).
	Sensitive []string
	// Widened lists the rules that reach beyond what the run used
	// (creation in a shared directory), one line each.
	Widened []string
	// Files and Network count the rules written (commented ones excluded);
	// Covered the observed paths the baseline or BASE already allowed.
	Files, Network, Covered int
}

// entry is one rule to write.
type entry struct {
	line    string // the YAML flow mapping
	comment string // what was seen
	warn    string // non-empty: written commented out, with this warning
	sortKey string
}

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

// Generate writes the policy.
func Generate(r *Recorder, o Options) (Result, error) {
	var res Result
	cov := o.Base
	if cov == nil {
		cov = &policy.Policy{Version: 2, FilesSet: true, FileDefault: policy.DefaultDeny, Baseline: policy.BaselineRuntime,
			NetworkSet: true, NetDefault: policy.DefaultDeny}
	}
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
				comment: seen(u.Opens, 1, want, p), warn: "sensitive: " + why})
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
				c := seen(ob.use.Opens, 1, ob.want, p)
				if ob.createdIn {
					c += "; files created in it"
				}
				sens = append(sens, entry{line: fileLine(p, true, ob.want), sortKey: p, comment: c, warn: what})
				continue
			}
			fileEntries = append(fileEntries, entry{line: fileLine(p, false, ob.want), sortKey: p, comment: seen(ob.use.Opens, 1, ob.want, p)})
			continue
		}
		a := sub[top]
		if a == nil {
			a = &agg{}
			sub[top] = a
		}
		a.want |= ob.want
		a.opens += ob.use.Opens
		if ob.use.Opens > 0 && (p != top || !ob.use.Dir) {
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
		c := seen(a.opens, a.n, a.want, ex)
		if dirs[d] != nil && dirs[d].created {
			c += "; files created in it"
		}
		fileEntries = append(fileEntries, entry{line: fileLine(d, true, a.want), sortKey: d, comment: c})
	}
	sort.Slice(fileEntries, func(i, j int) bool { return fileEntries[i].sortKey < fileEntries[j].sortKey })
	sort.Slice(sens, func(i, j int) bool { return sens[i].sortKey < sens[j].sortKey })
	res.Files = len(fileEntries)
	fileEntries = append(fileEntries, sens...)

	netEntries := r.netEntries(cov, o.Hosts, &res)
	var out []byte
	var err error
	if o.Base != nil {
		out, err = mergeBase(o, fileEntries, netEntries)
	} else {
		out = fresh(o, fileEntries, netEntries)
	}
	if err != nil {
		return res, err
	}
	if _, err := policy.Parse("learned policy", out); err != nil {
		return res, fmt.Errorf("the written policy does not parse (a bug): %w", err)
	}
	res.Policy = out
	sort.Strings(res.Sensitive)
	sort.Strings(res.Widened)
	return res, nil
}

// netEntries are the network rules: by host name where the address came
// from a lookup (with Hosts), else by address; the ports and protocol seen.
func (r *Recorder) netEntries(cov *policy.Policy, hosts bool, res *Result) []entry {
	r.mu.Lock()
	defer r.mu.Unlock()
	type hk struct {
		name  string
		proto policy.Proto
	}
	byHost := map[hk]map[uint16]int{}
	var out []entry
	keys := make([]NetKey, 0, len(r.nets))
	for k := range r.nets {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if c := keys[i].Addr.Compare(keys[j].Addr); c != 0 {
			return c < 0
		}
		return keys[i].Proto < keys[j].Proto
	})
	for i, k := range keys {
		u := r.nets[k]
		proto := k.Proto
		if proto != policy.ProtoTCP && proto != policy.ProtoUDP {
			proto = policy.ProtoAny
		}
		ports := map[uint16]int{}
		for port, n := range u.Ports {
			if port == 53 && hosts && len(r.names) > 0 {
				// DNS: with host entries every query goes to assay's
				// resolver (the kernel redirects port 53).
				continue
			}
			if cov.NetVerdict(k.Addr, port, proto).Allowed {
				res.Covered++
				continue
			}
			ports[port] += n
		}
		if len(ports) == 0 {
			continue
		}
		if names := r.names[k.Addr]; hosts && len(names) > 0 {
			for n := range names {
				m := byHost[hk{n, proto}]
				if m == nil {
					m = map[uint16]int{}
					byHost[hk{n, proto}] = m
				}
				for p, c := range ports {
					m[p] += c
				}
			}
			continue
		}
		e := entry{line: netLine("cidr", netip.PrefixFrom(k.Addr, k.Addr.BitLen()).String(), ports, proto),
			sortKey: fmt.Sprintf("1 %06d", i), comment: netSeen(ports, proto, r.names[k.Addr])}
		if why := SensitiveAddr(k.Addr); why != "" {
			e.warn = "sensitive: " + why
			res.Sensitive = append(res.Sensitive, fmt.Sprintf("%s (%s): %s", k.Addr, why, proto))
		}
		out = append(out, e)
	}
	for k, ports := range byHost {
		e := entry{line: netLine("host", k.name, ports, k.proto), sortKey: "0 " + k.name + " " + k.proto.String(), comment: netSeen(ports, k.proto, nil)}
		if why := sensitiveHost(k.name); why != "" {
			e.warn = "sensitive: " + why
			res.Sensitive = append(res.Sensitive, fmt.Sprintf("%s (%s): %s", k.name, why, k.proto))
		}
		out = append(out, e)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].sortKey < out[j].sortKey })
	for _, e := range out {
		if e.warn == "" {
			res.Network++
		}
	}
	return out
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

func accessWords(a policy.Access) string {
	var w []string
	if a&policy.AccessRead != 0 {
		w = append(w, "read")
	}
	if a&policy.AccessWrite != 0 {
		w = append(w, "write")
	}
	if a&policy.AccessExec != 0 {
		w = append(w, "exec")
	}
	return strings.Join(w, ", ")
}

func seen(opens, n int, a policy.Access, example string) string {
	s := "seen: "
	if n > 1 {
		s += fmt.Sprintf("%d paths, ", n)
	}
	s += fmt.Sprintf("%d %s (%s)", opens, plural(opens, "open", "opens"), accessWords(a))
	if n > 1 {
		s += ", e.g. " + example
	}
	return s
}

func netSeen(ports map[uint16]int, proto policy.Proto, names map[string]bool) string {
	n := 0
	for _, c := range ports {
		n += c
	}
	verb := "connects/sends"
	switch proto {
	case policy.ProtoTCP:
		verb = plural(n, "connect", "connects")
	case policy.ProtoUDP:
		verb = plural(n, "send", "sends")
	}
	s := fmt.Sprintf("seen: %d %s", n, verb)
	if len(names) > 0 {
		var ns []string
		for k := range names {
			ns = append(ns, k)
		}
		sort.Strings(ns)
		s += "; answered for " + strings.Join(ns, ", ")
	}
	return s
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

var plainYAML = regexp.MustCompile(`^[A-Za-z0-9_./@+-][A-Za-z0-9_./@+=~-]*$`)

// yamlString writes s as a plain YAML scalar when that is unambiguous,
// else double-quoted (a JSON string is a YAML double-quoted scalar).
func yamlString(s string) string {
	if plainYAML.MatchString(s) && s != "null" && s != "true" && s != "false" && s != "~" {
		return s
	}
	return strconv.Quote(s) // Go's escapes are a subset of YAML's for valid UTF-8
}

func fileLine(p string, dir bool, a policy.Access) string {
	if dir && p != "/" {
		p += "/"
	}
	return fmt.Sprintf("{path: %s, access: %s}", yamlString(p), a)
}

func netLine(key, val string, ports map[uint16]int, proto policy.Proto) string {
	ps := make([]int, 0, len(ports))
	for p := range ports {
		ps = append(ps, int(p))
	}
	sort.Ints(ps)
	s := fmt.Sprintf("{%s: %s", key, yamlString(val))
	if !(len(ps) == 1 && ps[0] == 0) {
		strs := make([]string, len(ps))
		for i, p := range ps {
			strs[i] = strconv.Itoa(p)
		}
		s += ", ports: [" + strings.Join(strs, ", ") + "]"
	}
	if proto != policy.ProtoAny {
		s += ", proto: " + proto.String()
	}
	return s + "}"
}

// argvText is the command line, each argument quoted when needed (never
// a line break).
func argvText(argv []string) string {
	q := make([]string, len(argv))
	for i, a := range argv {
		if plainYAML.MatchString(a) {
			q[i] = a
		} else {
			q[i] = strconv.Quote(a)
		}
	}
	return strings.Join(q, " ")
}

// header is the comment at the top of a written policy.
func header(argv []string) string {
	return "# Written by assay learn from one run of: " + argvText(argv) + "\n" +
		"# Review it before use: it allows what that run did (a directory used in\n" +
		"# several places as a whole subtree), nothing else. Commented-out rules are\n" +
		"# sensitive paths or addresses the run touched: allow them only on purpose.\n"
}

func writeEntries(b *strings.Builder, indent string, es []entry) {
	for _, e := range es {
		b.WriteString(indent + "# " + e.comment + "\n")
		if e.warn != "" {
			b.WriteString(indent + "# WARNING " + e.warn + "; not allowed unless you uncomment it:\n")
			b.WriteString(indent + "# - " + e.line + "\n")
			continue
		}
		b.WriteString(indent + "- " + e.line + "\n")
	}
}

func live(es []entry) int {
	n := 0
	for _, e := range es {
		if e.warn == "" {
			n++
		}
	}
	return n
}

// fresh writes a new policy.
func fresh(o Options, files, nets []entry) []byte {
	var b strings.Builder
	b.WriteString(header(o.Argv))
	b.WriteString("version: 2\nmode: enforce\nfiles:\n  default: deny\n  baseline: runtime\n")
	if live(files) == 0 {
		b.WriteString("  allow: []\n")
		writeEntries(&b, "  ", files)
	} else {
		b.WriteString("  allow:\n")
		writeEntries(&b, "    ", files)
	}
	b.WriteString("network:\n  default: deny\n")
	if live(nets) == 0 {
		b.WriteString("  allow: []\n")
		writeEntries(&b, "  ", nets)
	} else {
		b.WriteString("  allow:\n")
		writeEntries(&b, "    ", nets)
	}
	if hasHost(nets) && len(o.Upstream) > 0 {
		b.WriteString("dns:\n  upstream: [" + upstreamList(o.Upstream) + "]\n")
	}
	return []byte(b.String())
}

func hasHost(es []entry) bool {
	for _, e := range es {
		if e.warn == "" && strings.HasPrefix(e.line, "{host: ") {
			return true
		}
	}
	return false
}
