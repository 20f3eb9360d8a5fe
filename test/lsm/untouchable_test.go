//go:build vmtest

package lsm_test

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestDenyMeansUntouchable: for an in-scope process, a denied file and
// everything under a denied directory can be neither changed nor removed,
// nothing can be created in or moved into a denied directory, and a denied
// directory can be neither removed nor renamed. Each refusal is an event
// naming the operation; afterwards the data is intact. (ext4 on a loop
// device: it has user xattrs, which tmpfs on 6.1 lacks.)
func TestDenyMeansUntouchable(t *testing.T) {
	d := mountExt4Loop(t)
	secret := d + "/secret"
	writeFile(t, secret, "s3cret")
	writeFile(t, d+"/vault/inner", "inner")
	if err := os.Mkdir(d+"/vault/sub", 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(d+"/empty", 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, d+"/open.txt", "ok")
	tool := d + "/tool"
	if err := os.WriteFile(tool, []byte("#!/bin/sh\necho ran\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Setxattr(secret, "user.assay", []byte("kept"), 0); err != nil {
		t.Fatalf("setxattr: %v", err)
	}
	before := snapshot(t, secret)
	// Descriptors opened before the monitor started: mapping them
	// executable is judged by mmap_file and file_mprotect.
	held, err := os.Open(tool)
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	pol := fmt.Sprintf(`version: 1
files:
  deny:
    - {path: %[1]s/secret, id: 7}
    - {path: %[1]s/vault/, id: 8}
    - {path: %[1]s/empty/, id: 9}
    - {path: %[1]s/tool, id: 10}
`, d)
	c := func(what, action string, rule uint32, op string, args ...string) check {
		return check{what: what, action: action, args: args, rule: rule, op: op}
	}
	runChecks(t, pol, nil, []check{
		c("unlink a denied file", "unlink", 7, "unlink", secret),
		c("unlink a file in a denied directory", "unlink", 8, "unlink", d+"/vault/inner"),
		c("truncate(2) a denied file", "truncate", 7, "truncate", secret),
		c("truncate(2) a file in a denied directory", "truncate", 8, "truncate", d+"/vault/inner"),
		c("open O_TRUNC", "open-trunc", 7, "open", secret),
		c("fallocate punch (its write open)", "punch", 7, "open", secret),
		c("chmod", "chmod", 7, "chmod", secret),
		c("chown", "chown", 7, "chown", secret),
		c("utimes", "utimes", 7, "utimes", secret),
		c("setxattr", "setxattr", 7, "setxattr", secret),
		c("removexattr", "removexattr", 7, "removexattr", secret),
		c("chmod in a denied directory", "chmod", 8, "chmod", d+"/vault/inner"),
		c("rename a denied file", "rename", 7, "rename", secret, d+"/moved"),
		c("hard-link a denied file", "link", 7, "link", secret, d+"/linked"),
		c("create in a denied directory", "create", 8, "create", d+"/vault/new"),
		c("mkdir in a denied directory", "mkdir", 8, "mkdir", d+"/vault/newdir"),
		c("mknod in a denied directory", "mknod", 8, "mknod", d+"/vault/fifo"),
		c("symlink in a denied directory", "symlink", 8, "symlink", "/etc/passwd", d+"/vault/sl"),
		c("move a file into a denied directory", "rename", 8, "rename", d+"/open.txt", d+"/vault/moved-in"),
		c("rename over a denied file", "rename", 7, "rename", d+"/open.txt", secret),
		c("rmdir in a denied directory", "rmdir", 8, "rmdir", d+"/vault/sub"),
		c("rmdir a denied (empty) directory", "rmdir", 9, "rmdir", d+"/empty"),
		c("rename a denied directory", "rename", 8, "rename", d+"/vault", d+"/vault2"),
		c("execute a denied program", "exec-file", 10, "exec", tool),
		{what: "mmap(PROT_EXEC) of a denied file through a descriptor opened before the monitor started", action: "mmap-exec-fd", args: []string{"3"}, files: []*os.File{held}, rule: 10, op: "mmap"},
		{what: "mprotect(PROT_EXEC) of a denied file through a descriptor opened before the monitor started", action: "mprotect-exec-fd", args: []string{"3"}, files: []*os.File{held}, rule: 10, op: "mmap"},
		{what: "untouched file", path: d + "/open.txt"},
	})
	after := snapshot(t, secret)
	if after != before {
		t.Errorf("the denied file changed:\nbefore %s\nafter  %s", before, after)
	}
	for _, p := range []string{d + "/vault/inner", d + "/vault/sub", d + "/empty", d + "/open.txt"} {
		if _, err := os.Lstat(p); err != nil {
			t.Errorf("%s: %v", p, err)
		}
	}
	for _, p := range []string{d + "/vault/new", d + "/vault/newdir", d + "/vault/fifo", d + "/vault/sl", d + "/vault/moved-in", d + "/moved", d + "/linked", d + "/vault2"} {
		if _, err := os.Lstat(p); err == nil {
			t.Errorf("%s exists", p)
		}
	}
	if b, _ := os.ReadFile(d + "/vault/inner"); string(b) != "inner" {
		t.Errorf("vault/inner holds %q", b)
	}
}

// snapshot describes everything a change could touch: content, mode,
// owner, size, times, xattr, link count.
func snapshot(t *testing.T, p string) string {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil {
		return "missing: " + err.Error()
	}
	data, _ := os.ReadFile(p)
	x := make([]byte, 64)
	n, xerr := unix.Getxattr(p, "user.assay", x)
	xs := fmt.Sprint(xerr)
	if xerr == nil {
		xs = string(x[:n])
	}
	return fmt.Sprintf("ino=%d mode=%o uid=%d gid=%d size=%d nlink=%d mtime=%d.%d atime-set content=%q xattr=%s",
		st.Ino, st.Mode, st.Uid, st.Gid, st.Size, st.Nlink, st.Mtim.Sec, st.Mtim.Nsec, data, xs)
}

// TestUnixSockets: reaching a named Unix socket is an access to its file
// (a stand-in for a container engine's socket): refused under the exact
// rule on the socket and under a directory rule over it, for stream
// connects and datagrams; an abstract socket owned outside the scope is
// refused under 1000004; a socket without a rule is reachable.
func TestUnixSockets(t *testing.T) {
	d := t.TempDir()
	os.Mkdir(d+"/run", 0o755)
	engine := listenUnix(t, d+"/engine.sock")
	docker := listenUnix(t, d+"/run/docker.sock")
	okSock := listenUnix(t, d+"/ok.sock")
	dgram := d + "/dgram.sock"
	dg, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: dgram, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer dg.Close()
	abstract := fmt.Sprintf("assay-test-%d", time.Now().UnixNano())
	ab, err := net.Listen("unix", "@"+abstract)
	if err != nil {
		t.Fatal(err)
	}
	defer ab.Close()
	go acceptAll(ab)
	pol := fmt.Sprintf(`version: 1
files:
  deny:
    - {path: %[1]s/engine.sock, id: 30}
    - {path: %[1]s/run/, id: 31}
    - {path: %[1]s/dgram.sock, id: 32}
`, d)
	runChecks(t, pol, nil, []check{
		{what: "connect to a denied socket", action: "unix-connect", args: []string{engine}, rule: 30, op: "connect"},
		{what: "connect to a socket in a denied directory", action: "unix-connect", args: []string{docker}, rule: 31, op: "connect"},
		{what: "datagram to a denied socket", action: "unix-send", args: []string{dgram}, rule: 32, op: "send"},
		{what: "abstract socket outside the scope", action: "unix-connect-abstract", args: []string{abstract}, rule: 1000004, op: "connect"},
		{what: "socket without a rule", action: "unix-connect", args: []string{okSock}},
	})
	// Nothing reached the denied datagram socket.
	dg.SetReadDeadline(time.Now().Add(10 * time.Millisecond))
	buf := make([]byte, 16)
	if n, _, err := dg.ReadFrom(buf); err == nil {
		t.Errorf("the denied datagram socket received %q", bytes.TrimSpace(buf[:n]))
	}
}

func listenUnix(t *testing.T, path string) string {
	t.Helper()
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go acceptAll(l)
	return filepath.Clean(path)
}

func acceptAll(l net.Listener) {
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		c.Close()
	}
}
