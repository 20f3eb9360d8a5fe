package cli

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/assaymcp/assay/internal/cgroup"
	"github.com/assaymcp/assay/internal/events"
	"github.com/assaymcp/assay/internal/kernel"
	"github.com/assaymcp/assay/internal/monitor"
	"github.com/assaymcp/assay/internal/policy"
)

// reload re-reads the policy file and swaps it in (SIGHUP). A refused
// policy leaves the old one in force.
func reload(sess *monitor.Session, path string, stderr io.Writer) {
	p, err := loadPolicy(path, io.Discard)
	if err == nil {
		err = sess.Reload(p)
	}
	if err != nil {
		fmt.Fprintf(stderr, "assay: reload refused, the previous policy stays in force: %v\n", err)
		return
	}
	fmt.Fprintf(stderr, "assay: reloaded %s (%s)\n", p.File, p.Summary())
}

// goneScope returns the first scope whose cgroup no longer exists (or was
// replaced by another with the same path), "" when all are there.
func goneScope(scopes []cgroup.Scope) string {
	for _, s := range scopes {
		var st syscall.Stat_t
		if err := syscall.Stat(s.Path, &st); err != nil || st.Ino != s.ID {
			return "cgroup " + s.Path
		}
	}
	return ""
}

func pinPresent(name string) bool {
	_, err := os.Stat(filepath.Join(kernel.PinRoot, name, "meta"))
	return err == nil
}

// attachCmd streams the events of a pinned instance until stopped, then
// prints its counters (cumulative since it was pinned).
func attachCmd(f *monitorFlags, format events.Format, stdout, stderr io.Writer) int {
	if err := monitor.CheckPrivileges(); err != nil {
		return fail(stderr, exitError, err)
	}
	signal.Ignore(syscall.SIGPIPE)
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sigs)
	sess, meta, err := monitor.Resume(f.attach, stdout, format)
	if err != nil {
		return fail(stderr, exitError, err)
	}
	fmt.Fprintf(stderr, "assay: attached to %q (%s, %s, pinned %s); stop with Ctrl-C, the instance stays in force\n",
		meta.Name, meta.Policy, meta.Summary, meta.AttachedAt.Format(time.RFC3339))
	var timeout <-chan time.Time
	if f.duration > 0 {
		timeout = time.After(f.duration)
	}
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	status := exitOK
wait:
	for {
		select {
		case <-sigs:
			break wait
		case <-timeout:
			break wait
		case <-tick.C:
			if sess.WriteErr() != nil {
				status = exitError
				break wait
			}
			if !pinPresent(f.attach) {
				fmt.Fprintf(stderr, "assay: instance %q was detached\n", f.attach)
				break wait
			}
		}
	}
	sum, err := sess.Stop()
	if err != nil {
		fmt.Fprintln(stderr, "assay: stopping: "+err.Error())
		status = exitError
	}
	if format == events.JSON {
		sum.WriteJSON(stdout)
	} else {
		fmt.Fprintln(stderr, "assay: counters since the instance was pinned:")
		sum.WriteText(stderr)
	}
	return status
}

type statusEntry struct {
	kernel.Meta
	Alive    bool                         `json:"monitor_alive"`
	Counters map[string]events.PathCounts `json:"counters"`
	Error    string                       `json:"error,omitempty"`
}

func statusCmd(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("assay status", flag.ContinueOnError)
	fs.SetOutput(stderr)
	output := fs.String("output", "text", "text or json")
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	if err := monitor.CheckPrivileges(); err != nil {
		return fail(stderr, exitError, err)
	}
	names, err := kernel.ListPinned()
	if err != nil {
		return fail(stderr, exitError, err)
	}
	var list []statusEntry
	for _, n := range names {
		e := statusEntry{Meta: kernel.Meta{Name: n}}
		inst, err := kernel.OpenPinned(n)
		if err != nil {
			e.Error = err.Error()
			list = append(list, e)
			continue
		}
		if meta, err := inst.Meta(); err == nil {
			e.Meta = meta
		}
		if c, err := inst.Counters(); err == nil {
			e.Counters = map[string]events.PathCounts{}
			for p := kernel.Path(0); p < kernel.NumPaths; p++ {
				e.Counters[p.String()] = events.PathCounts{Emitted: c.Emitted[p], Dropped: c.Dropped[p], Suppressed: c.Suppressed[p]}
			}
		}
		e.Alive = e.PID > 0 && syscall.Kill(e.PID, 0) == nil
		inst.Close()
		list = append(list, e)
	}
	if *output == "json" {
		out, _ := json.Marshal(map[string]any{"type": "status", "instances": list})
		fmt.Fprintln(stdout, string(out))
		return exitOK
	}
	if len(list) == 0 {
		fmt.Fprintln(stdout, "no pinned instances")
		return exitOK
	}
	tw := tabwriter.NewWriter(stdout, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tSCOPE\tPOLICY\tDIGEST\tRULES\tMODE\tATTACHED\tEVENTS (emitted/dropped/suppressed)")
	for _, e := range list {
		if e.Error != "" {
			fmt.Fprintf(tw, "%s\t-\t-\t-\t-\t-\t-\terror: %s\n", e.Name, e.Error)
			continue
		}
		scope := "the whole host"
		if !e.All && len(e.Scopes) > 0 {
			scope = e.Scopes[0].Path
			if len(e.Scopes) > 1 {
				scope += fmt.Sprintf(" (+%d)", len(e.Scopes)-1)
			}
		}
		var em, dr, su uint64
		for _, c := range e.Counters {
			em, dr, su = em+c.Emitted, dr+c.Dropped, su+c.Suppressed
		}
		digest := e.Digest
		if len(digest) > 12 {
			digest = digest[:12]
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\t%s\t%d/%d/%d\n", e.Name, scope, e.Policy, digest, e.Rules, e.Mode,
			e.AttachedAt.Local().Format(time.DateTime), em, dr, su)
	}
	tw.Flush()
	return exitOK
}

func detachCmd(args []string, stdout, stderr io.Writer) int {
	if len(args) != 1 {
		fmt.Fprintln(stderr, "usage: assay detach NAME")
		return exitUsage
	}
	if err := monitor.CheckPrivileges(); err != nil {
		return fail(stderr, exitError, err)
	}
	inst, err := kernel.OpenPinned(args[0])
	if err != nil {
		return fail(stderr, exitError, err)
	}
	links := inst.Links()
	err = inst.Unpin()
	inst.Close()
	if err != nil {
		return fail(stderr, exitError, fmt.Errorf("detach %s: %w", args[0], err))
	}
	fmt.Fprintf(stdout, "assay: detached %q (%d links removed)\n", args[0], links)
	return exitOK
}

func reloadCmd(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("assay reload", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("policy", "", "the new policy `FILE`")
	if len(args) < 1 || args[0] == "" || args[0][0] == '-' {
		fmt.Fprintln(stderr, "usage: assay reload NAME --policy FILE")
		return exitUsage
	}
	name := args[0]
	if err := fs.Parse(args[1:]); err != nil {
		return exitUsage
	}
	if *path == "" || fs.NArg() > 0 {
		fmt.Fprintln(stderr, "usage: assay reload NAME --policy FILE")
		return exitUsage
	}
	if err := monitor.CheckPrivileges(); err != nil {
		return fail(stderr, exitError, err)
	}
	p, err := policy.Load(*path)
	if err != nil {
		return fail(stderr, exitError, fmt.Errorf("reload refused, the previous policy stays in force: %w", err))
	}
	if err := monitor.ReloadPinned(name, p); err != nil {
		return fail(stderr, exitError, fmt.Errorf("reload refused, the previous policy stays in force: %w", err))
	}
	fmt.Fprintf(stdout, "assay: reloaded %q with %s (%s)\n", name, p.File, p.Summary())
	return exitOK
}
