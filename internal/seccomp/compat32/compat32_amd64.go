package compat32

const supported = true

// Syscall makes the i386 system call nr with up to three arguments through
// int $0x80 and returns the raw result (a negative errno on failure).
func Syscall(nr, a1, a2, a3 uint32) int32
