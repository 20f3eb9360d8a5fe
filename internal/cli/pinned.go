package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/assaymcp/assay/internal/cgroup"
	"github.com/assaymcp/assay/internal/events"
	"github.com/assaymcp/assay/internal/inotify"
	"github.com/assaymcp/assay/internal/kernel"
	"github.com/assaymcp/assay/internal/session"
)

// reload re-reads the policy file and swaps it in (SIGHUP). A refused
// policy leaves the old one in force.
func reload(sess *session.Session, path string, audit bool, stderr io.Writer) {
	p, err := loadPolicy(path, audit, io.Discard)
	if err == nil {
		err = sess.Reload(p)
	} else {
		sess.Metrics().Reload(false)
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
		if s.Gone() {
			return "cgroup " + s.Path
		}
	}
	return ""
}

// attachCmd streams the events of a pinned instance until stopped, then
// prints its counters (cumulative since it was pinned).
func attachCmd(f *monitorFlags, format events.Format, stdout, stderr io.Writer) error {
	if err := session.CheckPrivileges(); err != nil {
		return fail(stderr, exitError, err)
	}
	signal.Ignore(syscall.SIGPIPE)
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sigs)
	// Detaching is told by the kernel's inotify events; the watches are
	// in place before the first look.
	watch, err := inotify.New()
	if err != nil {
		return fail(stderr, exitError, err)
	}
	defer watch.Close()
	if err := kernel.WatchPin(watch, f.attach); err != nil {
		return fail(stderr, exitError, err)
	}
	sess, meta, err := session.Resume(f.attach, stdout, format)
	if err != nil {
		return fail(stderr, exitError, err)
	}
	fmt.Fprintf(stderr, "assay: attached to %q (%s, %s, pinned %s); stop with Ctrl-C, the instance stays in force\n",
		meta.Name, meta.Policy, meta.Summary, meta.AttachedAt.Format(time.RFC3339))
	var timeout <-chan time.Time
	if f.duration > 0 {
		timeout = time.After(time.Duration(f.duration))
	}
	status := exitOK
wait:
	for {
		select {
		case <-sigs:
			break wait
		case <-timeout:
			break wait
		case <-sess.WriteFailed():
			status = exitError
			break wait
		case <-watch.C():
			// The pins may be gone (or this is the first look): look.
			if !kernel.PinPresent(f.attach) {
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
	return exitWith(status)
}

type statusEntry struct {
	kernel.Meta
	Alive    bool                         `json:"monitor_alive"`
	Counters map[string]events.PathCounts `json:"counters"`
	Error    string                       `json:"error,omitempty"`
}

func newStatusCmd(stdout, stderr io.Writer) *cobra.Command {
	output := outputFlag("text")
	cmd := &cobra.Command{
		Use:   "status [--output json]",
		Short: "list pinned instances with their scope, policy and counters",
		Long: `Lists the instances pinned with 'assay monitor --pin NAME': scope, policy
file and digest, rule count, mode, attach time, whether the monitor that
pinned it still runs, and the emitted/dropped/suppressed event counters.` + exitStatusSection(`
  0  listed (also when there is none)
  1  an error (not root, bpffs unreadable)
  2  a wrong command line`),
		Args: noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runStatus(string(output), stdout, stderr)
		},
	}
	cmd.Flags().Var(&output, "output", "report format: text or json")
	return cmd
}

func runStatus(output string, stdout, stderr io.Writer) error {
	if err := session.CheckPrivileges(); err != nil {
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
				e.Counters[strings.ToLower(p.String())] = events.PathCounts{Emitted: c.Emitted[p], Dropped: c.Dropped[p], Suppressed: c.Suppressed[p]}
			}
		}
		e.Alive = e.PID > 0 && syscall.Kill(e.PID, 0) == nil
		inst.Close()
		list = append(list, e)
	}
	if output == "json" {
		out, _ := json.Marshal(map[string]any{"type": "status", "instances": list})
		fmt.Fprintln(stdout, string(out))
		return nil
	}
	if len(list) == 0 {
		fmt.Fprintln(stdout, "no pinned instances")
		return nil
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
	return nil
}

func newDetachCmd(stdout, stderr io.Writer) *cobra.Command {
	return &cobra.Command{
		Use:   "detach NAME",
		Short: "detach a pinned instance and remove its pins",
		Long: `Detaches every program of the pinned instance NAME and removes its pins
under ` + kernel.PinRoot + `/NAME: its enforcement ends.` + exitStatusSection(`
  0  detached
  1  an error (no such instance, not root)
  2  a wrong command line`),
		Args: exactArgs(1, "NAME, the pinned instance ('assay status' lists them)"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runDetach(args[0], stdout, stderr)
		},
	}
}

func runDetach(name string, stdout, stderr io.Writer) error {
	if err := session.CheckPrivileges(); err != nil {
		return fail(stderr, exitError, err)
	}
	inst, err := kernel.OpenPinned(name)
	if err != nil {
		return fail(stderr, exitError, err)
	}
	links := inst.Links()
	err = inst.Unpin()
	inst.Close()
	if err != nil {
		return fail(stderr, exitError, fmt.Errorf("detach %s: %w", name, err))
	}
	fmt.Fprintf(stdout, "assay: detached %q (%d links removed)\n", name, links)
	return nil
}

func newReloadCmd(stdout, stderr io.Writer) *cobra.Command {
	var path string
	cmd := &cobra.Command{
		Use:   "reload NAME --policy FILE",
		Short: "swap the policy of a pinned instance",
		Long: `Replaces the policy of the pinned instance NAME with FILE, atomically: the
new policy's maps are filled completely before one switch makes them
active. An invalid policy is refused and the previous one stays in force.
The scope cannot change on reload.` + exitStatusSection(`
  0  reloaded
  1  refused: the previous policy stays in force
  2  a wrong command line`),
		Args: exactArgs(1, "NAME, the pinned instance ('assay status' lists them)"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if path == "" {
				return usagef("missing --policy FILE")
			}
			return runReload(args[0], path, stdout, stderr)
		},
	}
	cmd.Flags().StringVar(&path, "policy", "", "the new policy `FILE`")
	return cmd
}

func runReload(name, path string, stdout, stderr io.Writer) error {
	if err := session.CheckPrivileges(); err != nil {
		return fail(stderr, exitError, err)
	}
	p, err := readPolicy(path)
	if err != nil {
		return fail(stderr, exitError, fmt.Errorf("reload refused, the previous policy stays in force: %w", err))
	}
	if err := session.ReloadPinned(name, p); err != nil {
		return fail(stderr, exitError, fmt.Errorf("reload refused, the previous policy stays in force: %w", err))
	}
	fmt.Fprintf(stdout, "assay: reloaded %q with %s (%s)\n", name, p.File, p.Summary())
	return nil
}
