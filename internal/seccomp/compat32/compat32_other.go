//go:build !amd64

package compat32

const supported = false

// Syscall is not available on this architecture.
func Syscall(nr, a1, a2, a3 uint32) int32 { return -38 } // -ENOSYS
