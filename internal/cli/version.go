package cli

import "runtime/debug"

// version is set at build time with -ldflags "-X ...cli.version=v1.2.3".
var version = ""

// Version returns the build's version: the linker-set one, else the module
// version or VCS revision Go recorded.
func Version() string {
	if version != "" {
		return version
	}
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "devel"
	}
	v := info.Main.Version
	for _, s := range info.Settings {
		if s.Key == "vcs.revision" && len(s.Value) >= 12 {
			return v + " (" + s.Value[:12] + ")"
		}
	}
	return v
}
