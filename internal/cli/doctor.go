package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/assaymcp/assay/internal/cgroup"
	"github.com/assaymcp/assay/internal/kernel"
	"github.com/assaymcp/assay/internal/landlock"
	"github.com/assaymcp/assay/internal/sandbox"
	"github.com/assaymcp/assay/internal/session"
	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"
)

// doctorCheck is one line of `assay doctor`.
type doctorCheck struct {
	Name     string `json:"name"`
	Status   string `json:"status"` // ok | missing
	Required bool   `json:"required"`
	Detail   string `json:"detail"`
	Errno    string `json:"errno,omitempty"`
	Fix      string `json:"fix,omitempty"`
}

type doctorReport struct {
	Type            string        `json:"type"` // "doctor"
	FullEnforcement bool          `json:"full_enforcement"`
	FileRules       string        `json:"file_rules"` // bpf-lsm | landlock | NOT ENFORCED
	Checks          []doctorCheck `json:"checks"`
}

const (
	statusOK      = "ok"
	statusMissing = "missing"
)

func newDoctorCmd(stdout, stderr io.Writer) *cobra.Command {
	output := outputFlag("text")
	cmd := &cobra.Command{
		Use:   "doctor [--output json]",
		Short: "check what this machine can enforce",
		Long: `Checks every kernel feature assay uses (by loading and attaching small
probe programs, not by reading configuration) and prints one line per
check: ok or missing, what was found, the errno, and what to do. The last
line says whether full enforcement is available. doctor mounts securityfs
(to read the LSM list) when it is not mounted.` + exitStatusSection(`
  0  full enforcement is available
  1  something required is missing (see the missing lines)
  2  a wrong command line`),
		Args: noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runDoctorCmd(string(output), stdout)
		},
	}
	cmd.Flags().Var(&output, "output", "report format: text or json")
	return cmd
}

func runDoctorCmd(output string, stdout io.Writer) error {
	rep := runDoctor()
	if output == "json" {
		out, _ := json.Marshal(rep)
		if _, err := stdout.Write(append(out, '\n')); err != nil {
			return exitWith(exitError)
		}
	} else {
		for _, c := range rep.Checks {
			status := c.Status
			if !c.Required && c.Status != statusOK {
				status += " (optional)"
			}
			line := fmt.Sprintf("%-18s %-17s %s", status, c.Name, c.Detail)
			if c.Fix != "" {
				line += "; to fix: " + c.Fix
			}
			fmt.Fprintln(stdout, line)
		}
		switch {
		case rep.FullEnforcement:
			fmt.Fprintln(stdout, "full enforcement available: network rules with cgroup BPF, file rules with BPF LSM")
		case rep.FileRules == sandbox.MechLandlock:
			fmt.Fprintln(stdout, "degraded: `assay run` enforces file rules with Landlock instead of BPF LSM (path-based; see `assay run --help`); `assay monitor` cannot enforce file rules")
		default:
			fmt.Fprintln(stdout, "degraded: some rules cannot be enforced on this machine (see the missing lines above)")
		}
	}
	if !rep.FullEnforcement {
		return exitWith(exitError)
	}
	return nil
}

func runDoctor() doctorReport {
	rep := doctorReport{Type: "doctor"}
	add := func(c doctorCheck) { rep.Checks = append(rep.Checks, c) }
	failed := func(name string, required bool, err error, fix string) doctorCheck {
		c := doctorCheck{Name: name, Status: statusMissing, Required: required, Detail: oneLine(err.Error()), Fix: fix}
		var fe *kernel.FeatureError
		if errors.As(err, &fe) {
			c.Detail = oneLine(fe.Feature + " unavailable: " + fe.Err.Error())
			if fix == "" {
				c.Fix = fe.Fix
			}
		}
		var errno unix.Errno
		if errors.As(err, &errno) {
			c.Errno = unix.ErrnoName(errno)
			if fe != nil {
				// The library's own wording can mislead (it suggests
				// MEMLOCK for any EPERM): the feature and the errno say it.
				c.Detail = fe.Feature + " unavailable: " + errno.Error() + " (" + c.Errno + ")"
			} else if !strings.Contains(c.Detail, c.Errno) {
				c.Detail += " (" + c.Errno + ")"
			}
		}
		c.Fix = strings.TrimSuffix(c.Fix, "; run `assay doctor`")
		return c
	}

	// Kernel version: ring buffers need 5.8, clone3(CLONE_INTO_CGROUP) 5.7.
	if rel, err := kernel.Release(); err != nil {
		add(failed("kernel", true, err, ""))
	} else {
		c := doctorCheck{Name: "kernel", Status: statusOK, Required: true, Detail: "Linux " + rel}
		if !kernel.ReleaseAtLeast(rel, 5, 8) {
			c.Status, c.Fix = statusMissing, "Assay needs Linux 5.8 or later"
		}
		add(c)
	}

	if err := session.CheckPrivileges(); err != nil {
		add(failed("privileges", true, err, ""))
	} else {
		add(doctorCheck{Name: "privileges", Status: statusOK, Required: true, Detail: "can load BPF programs (CAP_SYS_ADMIN or CAP_BPF+CAP_PERFMON+CAP_NET_ADMIN)"})
	}

	if _, err := os.Stat(kernel.BTFPath); err != nil {
		add(failed("btf", true, err, "use a kernel built with CONFIG_DEBUG_INFO_BTF=y"))
	} else {
		add(doctorCheck{Name: "btf", Status: statusOK, Required: true, Detail: kernel.BTFPath})
	}

	cgMount, err := cgroup.Mount()
	if err != nil {
		add(failed("cgroup2", true, err, "mount the unified hierarchy: mount -t cgroup2 none /sys/fs/cgroup"))
	} else {
		add(doctorCheck{Name: "cgroup2", Status: statusOK, Required: true, Detail: "mounted at " + cgMount})
	}

	if !kernel.BPFFSMounted() {
		add(doctorCheck{Name: "bpffs", Status: statusMissing, Detail: "no bpf file system at " + kernel.BPFFS + " (needed only by monitor --pin, which mounts it)",
			Fix: "mount -t bpf bpf " + kernel.BPFFS + " to inspect programs with bpftool"})
	} else {
		add(doctorCheck{Name: "bpffs", Status: statusOK, Detail: "mounted at " + kernel.BPFFS})
	}

	lsms, err := kernel.ActiveLSMs()
	if err != nil {
		add(failed("lsm-list", true, err, "mount -t securityfs securityfs "+kernel.SecurityFS))
	} else {
		c := doctorCheck{Name: "lsm-list", Status: statusOK, Required: true, Detail: strings.Join(lsms, ",")}
		if mode := kernel.Lockdown(); mode != "" {
			c.Detail += " (lockdown: " + mode + ")"
		}
		if !contains(lsms, "bpf") {
			c.Status = statusMissing
			c.Fix = "add bpf to the lsm= kernel parameter (e.g. lsm=" + strings.Join(lsms, ",") + ",bpf) and reboot"
		}
		add(c)
	}

	lsmErr := kernel.ProbeLSM()
	if lsmErr != nil {
		add(failed("bpf-lsm", true, lsmErr, ""))
	} else {
		add(doctorCheck{Name: "bpf-lsm", Status: statusOK, Required: true, Detail: "an lsm/file_open probe program loaded and attached"})
	}

	if err := probeSockAddr(); err != nil {
		add(failed("cgroup-sock-addr", true, err, ""))
	} else {
		add(doctorCheck{Name: "cgroup-sock-addr", Status: statusOK, Required: true, Detail: "connect4/6 and sendmsg4/6 programs loaded and attached to a fresh cgroup, then detached"})
	}

	if err := kernel.ProbeRingbuf(); err != nil {
		add(failed("ringbuf", true, err, "Assay needs BPF ring buffers (Linux 5.8 or later)"))
	} else {
		add(doctorCheck{Name: "ringbuf", Status: statusOK, Required: true, Detail: "created a BPF ring buffer map"})
	}

	abi, llErr := landlock.ABI()
	if llErr != nil {
		add(failed("landlock", false, llErr, "boot with landlock in the lsm= kernel parameter on a kernel with CONFIG_SECURITY_LANDLOCK=y (fallback for file rules)"))
	} else {
		add(doctorCheck{Name: "landlock", Status: statusOK, Detail: "ABI " + strconv.Itoa(abi) + " (the fallback for file rules in `assay run`)"})
	}

	rep.FullEnforcement = true
	for _, c := range rep.Checks {
		if c.Required && c.Status != statusOK {
			rep.FullEnforcement = false
		}
	}
	switch {
	case lsmErr == nil:
		rep.FileRules = sandbox.MechBPFLSM
	case llErr == nil:
		rep.FileRules = sandbox.MechLandlock
	default:
		rep.FileRules = sandbox.MechNone
	}
	return rep
}

// probeSockAddr attaches the network programs to a fresh, empty leaf
// cgroup, then detaches them and removes the cgroup. The cgroup is named
// assay-doctor-PID-RANDOM after this process, so that a caller (the tests)
// can tell this run's cgroups from those of doctors running concurrently.
func probeSockAddr() (err error) {
	leaf, err := cgroup.CreateLeaf("", "assay-doctor-"+strconv.Itoa(os.Getpid()))
	if err != nil {
		return err
	}
	defer func() {
		if rerr := cgroup.Remove(leaf); rerr != nil && err == nil {
			err = rerr
		}
	}()
	return kernel.ProbeSockAddr(kernel.Scope{Path: leaf.Path, ID: leaf.ID, Level: leaf.Level})
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }
