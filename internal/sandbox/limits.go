package sandbox

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/assaymcp/assay/internal/cgroup"
)

// Limits are the resource limits of the sandbox cgroup (--memory, --pids,
// --cpu). Zero values mean no limit. They are written to the cgroup v2
// files memory.max (and memory.swap.max 0), pids.max and cpu.max of the
// command's cgroup; the controllers are enabled in the parent's
// cgroup.subtree_control as needed. Where a controller is not available
// in cgroup v2 (a hybrid layout that keeps it on a v1 hierarchy, or a
// parent that does not delegate it) assay refuses to start and says so.
type Limits struct {
	Memory int64   // bytes
	Pids   int64   // processes (threads count)
	CPU    float64 // cores
}

// cpuPeriod is the cpu.max period in microseconds.
const cpuPeriod = 100000

// Check validates the values.
func (lim Limits) Check() error {
	switch {
	case lim.Memory < 0:
		return errors.New("--memory: must be positive")
	case lim.Memory > 0 && lim.Memory < 1<<20:
		return fmt.Errorf("--memory %d: less than 1 MiB cannot run a program", lim.Memory)
	case lim.Pids < 0:
		return errors.New("--pids: must be positive")
	case lim.CPU < 0:
		return errors.New("--cpu: must be positive")
	case lim.CPU > 0 && lim.CPU*cpuPeriod < 1000:
		return fmt.Errorf("--cpu %g: at least 0.01 cores", lim.CPU)
	}
	return nil
}

func (lim Limits) controllers() []string {
	var c []string
	if lim.Memory > 0 {
		c = append(c, "memory")
	}
	if lim.Pids > 0 {
		c = append(c, "pids")
	}
	if lim.CPU > 0 {
		c = append(c, "cpu")
	}
	return c
}

// Enable makes the controllers the limits need available to the children
// of parent, or says why it cannot.
func (lim Limits) Enable(parent cgroup.Scope) error {
	want := lim.controllers()
	if len(want) == 0 {
		return nil
	}
	have, err := words(filepath.Join(parent.Path, "cgroup.controllers"))
	if err != nil {
		return fmt.Errorf("resource limits: %w", err)
	}
	enabled, err := words(filepath.Join(parent.Path, "cgroup.subtree_control"))
	if err != nil {
		return fmt.Errorf("resource limits: %w", err)
	}
	for _, c := range want {
		if enabled[c] {
			continue
		}
		if !have[c] {
			hint := "the parent cgroup does not delegate it; choose another --cgroup-parent or enable it in the parents' cgroup.subtree_control"
			if v1, ok := v1Hierarchy(c); ok {
				hint = "this host mounts it as a cgroup v1 hierarchy at " + v1 + " (hybrid layout); boot with systemd.unified_cgroup_hierarchy=1 for a pure cgroup v2 layout"
			}
			return fmt.Errorf("resource limits: the %s controller is not available in cgroup v2 at %s: %s", c, parent.Path, hint)
		}
		if err := os.WriteFile(filepath.Join(parent.Path, "cgroup.subtree_control"), []byte("+"+c), 0); err != nil {
			return fmt.Errorf("resource limits: enabling the %s controller in %s/cgroup.subtree_control: %w (a cgroup with processes of its own cannot delegate controllers: use --cgroup-parent)", c, parent.Path, err)
		}
	}
	return nil
}

// Apply writes the limits to the command's cgroup.
func (lim Limits) Apply(leaf cgroup.Scope) error {
	write := func(file, val string) error {
		if err := os.WriteFile(filepath.Join(leaf.Path, file), []byte(val), 0); err != nil {
			return fmt.Errorf("resource limits: writing %q to %s: %w", val, filepath.Join(leaf.Path, file), err)
		}
		return nil
	}
	if lim.Memory > 0 {
		if err := write("memory.max", strconv.FormatInt(lim.Memory, 10)); err != nil {
			return err
		}
		if _, err := os.Stat(filepath.Join(leaf.Path, "memory.swap.max")); err == nil {
			if err := write("memory.swap.max", "0"); err != nil {
				return err
			}
		}
	}
	if lim.Pids > 0 {
		if err := write("pids.max", strconv.FormatInt(lim.Pids, 10)); err != nil {
			return err
		}
	}
	if lim.CPU > 0 {
		if err := write("cpu.max", fmt.Sprintf("%d %d", int64(lim.CPU*cpuPeriod), cpuPeriod)); err != nil {
			return err
		}
	}
	return nil
}

// Describe is the report's line for the limits (none without limits).
func (lim Limits) Describe() []string {
	var p []string
	if lim.Memory > 0 {
		p = append(p, fmt.Sprintf("memory %d bytes (no swap)", lim.Memory))
	}
	if lim.Pids > 0 {
		p = append(p, fmt.Sprintf("%d processes/threads", lim.Pids))
	}
	if lim.CPU > 0 {
		p = append(p, fmt.Sprintf("%g CPU cores", lim.CPU))
	}
	if len(p) == 0 {
		return nil
	}
	return []string{"limits: " + strings.Join(p, ", ")}
}

func words(path string) (map[string]bool, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	m := map[string]bool{}
	for _, w := range strings.Fields(string(data)) {
		m[w] = true
	}
	return m, nil
}

// v1Hierarchy finds a cgroup v1 mount of controller c.
func v1Hierarchy(c string) (string, bool) {
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return "", false
	}
	for _, l := range strings.Split(string(data), "\n") {
		pre, post, ok := strings.Cut(l, " - ")
		f, g := strings.Fields(pre), strings.Fields(post)
		if !ok || len(f) < 5 || len(g) < 3 || g[0] != "cgroup" {
			continue
		}
		for _, o := range strings.Split(g[2], ",") {
			if o == c {
				return f[4], true
			}
		}
	}
	return "", false
}
