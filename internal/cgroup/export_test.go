package cgroup

// SetMountInfoPath points the package at a different mountinfo file and
// returns a function restoring the real one.
func SetMountInfoPath(p string) (restore func()) {
	old := mountInfoPath
	mountInfoPath = p
	return func() { mountInfoPath = old }
}
