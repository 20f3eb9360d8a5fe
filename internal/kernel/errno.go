package kernel

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

// describeErrno renders err with its errno name, e.g. "operation not
// permitted (EPERM)", so that users can search for it.
func describeErrno(err error) string {
	var errno unix.Errno
	if errors.As(err, &errno) {
		return fmt.Sprintf("%v (%s)", err, unix.ErrnoName(errno))
	}
	return err.Error()
}
