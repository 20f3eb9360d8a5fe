package kernel

import (
	"errors"
	"fmt"
	"strings"

	"golang.org/x/sys/unix"
)

// describeErrno renders err with its errno name, e.g. "operation not
// permitted (EPERM)", so that users can search for it.
func describeErrno(err error) string {
	var errno unix.Errno
	if errors.As(err, &errno) {
		msg := err.Error()
		// cilium/ebpf suggests raising RLIMIT_MEMLOCK on any EPERM; the
		// loader already removed that limit, so the hint only misleads.
		msg = strings.Replace(msg, " (MEMLOCK may be too low, consider rlimit.RemoveMemlock)", "", 1)
		return fmt.Sprintf("%s (%s)", msg, unix.ErrnoName(errno))
	}
	return err.Error()
}
