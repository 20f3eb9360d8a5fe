package sandbox

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/assaymcp/assay/internal/cgroup"
	"golang.org/x/sys/unix"
)

// # The watchdog: enforcement outlives assay until the sandbox is empty
//
// When assay dies (even by SIGKILL), the PID namespace dies with it (see
// shim.go), but assay's BPF links close as it exits, a moment before the
// kernel has killed every process of the namespace. So that no instruction
// of the sandbox runs in that moment without the programs, `assay run`
// starts a watchdog (`assay __watch LEAF`) outside the sandbox, in its own
// session, ignoring the terminal's signals, holding duplicates of every
// link and the read end of a pipe whose write end only assay holds. When
// the pipe reports EOF (assay exited or died), the watchdog kills the
// sandbox's cgroup (cgroup.kill), waits until the cgroup is empty (its
// cgroup.events says "populated 0": an inotify event, no polling), removes
// it, and only then exits, closing the links. At a normal exit assay has
// already removed the cgroup and waits for the watchdog before it detaches. The command cannot signal
// the watchdog: another user, another PID namespace, Landlock's signal
// scope.

// WatchCommand is the hidden subcommand of the watchdog.
const WatchCommand = "__watch"

// watchdog is a started watchdog.
type watchdog struct {
	cmd  *exec.Cmd
	done *os.File // write end: closed to let the watchdog go
}

// startWatchdog starts the watchdog for leaf, holding linkFDs.
func startWatchdog(leaf cgroup.Scope, linkFDs []int) (*watchdog, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	defer r.Close()
	extra, err := linkFiles(linkFDs)
	if err != nil {
		w.Close()
		return nil, err
	}
	// The watchdog inherited its copies: ours go now.
	defer closeFiles(extra)
	extra = append([]*os.File{r}, extra...)
	cmd := &exec.Cmd{
		Path:        "/proc/self/exe",
		Args:        []string{"assay", WatchCommand, leaf.Path, strconv.FormatUint(leaf.ID, 10), strconv.Itoa(len(linkFDs))},
		ExtraFiles:  extra,
		SysProcAttr: &syscall.SysProcAttr{Setsid: true},
	}
	if err := cmd.Start(); err != nil {
		w.Close()
		return nil, fmt.Errorf("starting the watchdog: %w", err)
	}
	return &watchdog{cmd: cmd, done: w}, nil
}

// linkFiles duplicates the instance's link descriptors for the watchdog's
// ExtraFiles. Never wrap the instance's own descriptors in an *os.File: a
// File closes its descriptor when it is garbage collected, which closed
// links the instance still owned (its Detach then failed with EBADF, or
// closed whatever had reused the number meanwhile).
func linkFiles(fds []int) ([]*os.File, error) {
	files := make([]*os.File, 0, len(fds))
	for _, fd := range fds {
		dup, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 3)
		if err != nil {
			closeFiles(files)
			return nil, fmt.Errorf("starting the watchdog: duplicating link descriptor %d: %w", fd, err)
		}
		files = append(files, os.NewFile(uintptr(dup), "link"))
	}
	return files, nil
}

func closeFiles(files []*os.File) {
	for _, f := range files {
		f.Close()
	}
}

// stop lets the watchdog go and waits for it (bounded: it only waits for
// an empty cgroup).
func (wd *watchdog) stop() error {
	wd.done.Close()
	errc := make(chan error, 1)
	go func() { errc <- wd.cmd.Wait() }()
	select {
	case err := <-errc:
		return err
	case <-time.After(30 * time.Second):
		wd.cmd.Process.Kill()
		return errors.New("the watchdog did not exit in 30s: killed")
	}
}

// Watch is `assay __watch LEAF ID N` (see above); descriptor 3 is the
// pipe, the N descriptors from 4 on the links. It returns when the sandbox
// is gone.
func Watch(args []string, stderr io.Writer) int {
	n, err := strconv.Atoi(args[len(args)-1])
	if len(args) != 3 || err != nil {
		fmt.Fprintln(stderr, "assay: __watch is internal to `assay run`")
		return ExitSetup
	}
	_ = n // descriptors 4..3+n: the links, held until exit
	signal.Ignore(forwarded...)
	signal.Ignore(syscall.SIGPIPE)
	pipe := os.NewFile(3, "pipe")
	_, _ = io.Copy(io.Discard, pipe) // until assay is gone or done
	leaf := args[0]
	id, _ := strconv.ParseUint(args[1], 10, 64)
	// Only the cgroup assay created: the same directory inode.
	var st unix.Stat_t
	if err := unix.Stat(leaf, &st); err != nil || st.Ino != id {
		return 0 // removed already (assay's normal exit)
	}
	// Kill what is left (the PID namespace normally has by now), wait for
	// the cgroup to be empty, remove it. The links close when this
	// process exits.
	_ = os.WriteFile(filepath.Join(leaf, "cgroup.kill"), []byte("1"), 0)
	if empty, err := cgroup.WaitEmpty(leaf, 20*time.Second); !empty {
		why := "still holds processes after 20s"
		if err != nil {
			why = "cannot be watched (" + err.Error() + ")"
		}
		fmt.Fprintf(stderr, "assay: watchdog: cgroup %s %s; its enforcement ends now\n", leaf, why)
		return 1
	}
	if err := cgroup.Remove(cgroup.Scope{Path: leaf, ID: id}); err != nil && !errors.Is(err, fs.ErrNotExist) {
		fmt.Fprintln(stderr, "assay: watchdog:", err)
	}
	return 0
}
