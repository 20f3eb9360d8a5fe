package learn

import (
	"net/netip"
	"path"
	"strings"
)

// Sensitive paths and addresses are never learned silently: the policy
// gets them as commented-out lines with a warning, and the summary lists
// them.

// sensitiveDirs are directories (anywhere, usually in a home directory)
// that hold credentials and keys.
var sensitiveDirs = []struct{ suffix, what string }{
	{"/.ssh", "SSH keys"},
	{"/.aws", "AWS credentials"},
	{"/.config/gcloud", "Google Cloud credentials"},
	{"/.azure", "Azure credentials"},
	{"/.kube", "Kubernetes credentials"},
	{"/.gnupg", "GnuPG keys"},
	{"/.docker", "container registry credentials"},
}

// sensitiveFiles are files by absolute path or by base name.
var sensitiveFiles = map[string]string{
	"/etc/shadow":      "password hashes",
	"/etc/gshadow":     "password hashes",
	"/etc/sudoers":     "sudo rules",
	".netrc":           "login credentials",
	".git-credentials": "git credentials",
	".npmrc":           "npm credentials",
	".pypirc":          "PyPI credentials",
	"docker.sock":      "container engine socket (root on the host)",
	"podman.sock":      "container engine socket",
	"containerd.sock":  "container engine socket (root on the host)",
	"crio.sock":        "container engine socket (root on the host)",
}

// Sensitive says why a path is sensitive, or "".
func Sensitive(p string) string {
	for _, d := range sensitiveDirs {
		if i := strings.Index(p+"/", d.suffix+"/"); i >= 0 {
			return d.what
		}
	}
	if w, ok := sensitiveFiles[p]; ok {
		return w
	}
	base := path.Base(p)
	if w, ok := sensitiveFiles[base]; ok {
		return w
	}
	if base == ".env" || strings.HasPrefix(base, ".env.") {
		return "environment file (secrets)"
	}
	return ""
}

// sensitiveAncestor reports whether dir is a proper ancestor of where
// credentials live in general: a home directory holds ~/.ssh and the
// others, ~/.config holds gcloud's.
func sensitiveAncestor(dir string) bool {
	if dir == "/root" || (path.Dir(dir) == "/home" && dir != "/home") {
		return true
	}
	if strings.HasSuffix(dir, "/.config") {
		return true
	}
	return false
}

// metadata are the cloud instance metadata services: a program on a cloud
// machine reads the machine's credentials there.
var metadata = map[netip.Addr]string{
	netip.MustParseAddr("169.254.169.254"): "cloud instance metadata (AWS, GCP, Azure, ...)",
	netip.MustParseAddr("fd00:ec2::254"):   "cloud instance metadata (AWS, IPv6)",
	netip.MustParseAddr("169.254.170.2"):   "container credentials (AWS ECS)",
	netip.MustParseAddr("100.100.100.200"): "cloud instance metadata (Alibaba)",
}

// SensitiveAddr says why an address is sensitive, or "".
func SensitiveAddr(a netip.Addr) string {
	return metadata[a.Unmap()]
}

// sensitiveHost says why a host name is sensitive, or "".
func sensitiveHost(name string) string {
	if name == "metadata.google.internal" || name == "metadata" {
		return "cloud instance metadata (GCP)"
	}
	return ""
}
