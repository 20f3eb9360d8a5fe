// The probe process side: a re-executed test binary performs one action
// from the tables of probe_net.go, probe_file.go and probe_proc.go and
// prints its report.

package assaytest

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

func init() {
	// In a probe, keep the main goroutine on the main thread from the
	// start (LockOSThread during init does that), so that the system calls
	// under test are made by the thread whose id is the process id.
	if os.Getenv(probeEnv) != "" {
		runtime.LockOSThread()
	}
}

// probeAction performs the operation under test and records its outcome
// in r. It returns an error only for bad arguments or a broken probe.
type probeAction func(r *ProbeResult, args []string) error

// probeWrapper prepares the probe process (its name, its user) and names
// the action to run next, with its arguments.
type probeWrapper func(args []string) (action string, rest []string, err error)

// The probe actions by name, one table per domain (probe_net.go,
// probe_file.go, probe_proc.go), merged by actions.
var (
	netActions  = map[string]probeAction{}
	fileActions = map[string]probeAction{}
	procActions = map[string]probeAction{}
	wrappers    = map[string]probeWrapper{}
)

// actions returns the action named name.
func actions(name string) (probeAction, bool) {
	for _, t := range []map[string]probeAction{netActions, fileActions, procActions, fileProbes} {
		if a, ok := t[name]; ok {
			return a, true
		}
	}
	return nil, false
}

// runProbe performs action and prints its report. Its exit status is 0
// whenever it could attempt the action, whatever the outcome; 2 for bad
// arguments.
func runProbe(action string, args []string) int {
	// Every system call under test is made from this thread.
	runtime.LockOSThread()
	fail := func(err error) int {
		fmt.Fprintf(os.Stderr, "assaytest probe %s %q: %v\n", action, args, err)
		return 2
	}
	for {
		w, ok := wrappers[action]
		if !ok {
			break
		}
		next, rest, err := w(args)
		if err != nil {
			return fail(err)
		}
		action, args = next, rest
	}
	act, ok := actions(action)
	if !ok {
		return fail(fmt.Errorf("unknown action %q", action))
	}
	res := ProbeResult{PID: os.Getpid(), TID: unix.Gettid(), Exit: -1}
	if comm, err := os.ReadFile("/proc/self/comm"); err == nil {
		res.Comm = strings.TrimSpace(string(comm))
	}
	if err := act(&res, args); err != nil {
		return fail(err)
	}
	out, _ := json.Marshal(res)
	os.Stdout.Write(append(out, '\n'))
	return 0
}

// setErr records the outcome of the operation under test.
func (r *ProbeResult) setErr(err error) {
	if err == nil {
		return
	}
	r.Err = err.Error()
	var errno unix.Errno
	if errors.As(err, &errno) {
		r.Errno = unix.ErrnoName(errno)
		if r.Errno == "" {
			r.Errno = "errno" + strconv.Itoa(int(errno))
		}
	}
}

// untilStop runs one attempt at a time until the file stop exists,
// creating stop+".ready" after the first attempt. It checks for the file
// every 64 attempts, so that the check costs little next to the attempts.
func untilStop(stop string, attempt func()) error {
	for i := 0; ; i++ {
		attempt()
		if i == 0 {
			if err := os.WriteFile(stop+".ready", nil, 0o644); err != nil {
				return err
			}
		}
		if i%64 == 63 {
			if _, err := os.Stat(stop); err == nil {
				return nil
			}
		}
	}
}
