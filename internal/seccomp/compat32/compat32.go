// Package compat32 makes a system call through the 32-bit entry point of
// x86-64 (int $0x80), for the tests that prove the seccomp filter refuses
// it: a 32-bit system call number means another call in the 64-bit table.
package compat32

// Supported reports whether this architecture has the entry point.
const Supported = supported
