package run_test

// Signals: forwarding to the command, and SIGKILL of assay itself.

import (
	"fmt"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestRunForwardsSignals(t *testing.T) {
	e := newEnv(t)
	pol := e.policy(netPolicy)
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP} {
		t.Run(unix.SignalName(sig), func(t *testing.T) {
			s := e.start("--policy", pol, "--", "@", "signals")
			leaf := e.leaf(s.lines["cgroup"])
			ids := attached(t, leaf)
			if len(ids) != 4 {
				t.Fatalf("%d programs attached to %s, want 4", len(ids), leaf.Path)
			}
			if err := s.cmd.Process.Signal(sig); err != nil {
				t.Fatal(err)
			}
			status, rest := s.wait(t)
			if want := "got " + unix.SignalName(sig) + "\n"; status != 7 || rest != want {
				t.Errorf("status %d, stdout %q; want 7 and %q\nstderr:\n%s", status, rest, want, s.stderr.String())
			}
			if !gone(leaf.Path) {
				t.Errorf("cgroup %s still exists", leaf.Path)
			}
			programsFreed(t, ids)
		})
	}
}

// TestRunForwardsOtherSignals: SIGQUIT, SIGUSR1, SIGUSR2 and SIGWINCH
// sent to assay reach the command too (README), one session for all: the
// command acknowledges each before the next is sent, and SIGTERM ends it.
func TestRunForwardsOtherSignals(t *testing.T) {
	e := newEnv(t)
	s := e.start("--policy", e.policy(netPolicy), "--", "@", "signals-all")
	for _, sig := range []syscall.Signal{syscall.SIGQUIT, syscall.SIGUSR1, syscall.SIGUSR2, syscall.SIGWINCH} {
		if err := s.cmd.Process.Signal(sig); err != nil {
			t.Fatal(err)
		}
		line := make(chan string, 1)
		go func() {
			l, _ := s.stdout.ReadString('\n')
			line <- l
		}()
		select {
		case l := <-line:
			if want := "got " + unix.SignalName(sig) + "\n"; l != want {
				t.Fatalf("after %s the command printed %q, want %q\nstderr:\n%s", unix.SignalName(sig), l, want, s.stderr.String())
			}
		case <-time.After(20 * time.Second):
			t.Fatalf("%s was not forwarded within 20s\nstderr:\n%s", unix.SignalName(sig), s.stderr.String())
		}
	}
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if status, rest := s.wait(t); status != 7 || rest != "got SIGTERM\n" {
		t.Errorf("status %d, stdout %q; want 7 and \"got SIGTERM\\n\"\nstderr:\n%s", status, rest, s.stderr.String())
	}
}

// TestRunSIGKILL: when assay is killed with SIGKILL, nothing of the
// sandbox keeps running: init dies with assay (PR_SET_PDEATHSIG) and the
// kernel kills the rest of its PID namespace, a grandchild included. The
// watchdog keeps the programs attached until the cgroup is empty, then
// removes it and lets them go.
func TestRunSIGKILL(t *testing.T) {
	e := newEnv(t)
	pol := e.policy(netPolicy)
	s := e.start("--policy", pol, "--", "@", "daemon")
	leaf := e.leaf(s.lines["cgroup"])
	ids := attached(t, leaf)
	pids, err := leaf.PIDs()
	if err != nil {
		t.Fatal(err)
	}
	// init, the helper and its grandchild (host pids).
	if len(ids) != 4 || len(pids) != 3 {
		t.Fatalf("programs %v, processes in the cgroup %v (want init, the command and a grandchild)", ids, pids)
	}
	t.Cleanup(func() {
		for _, p := range pids {
			unix.Kill(p, unix.SIGKILL)
		}
	})

	s.cmd.Process.Signal(syscall.SIGKILL)
	if status, _ := s.wait(t); status != 137 {
		t.Fatalf("assay status %d, want 137", status)
	}
	for _, p := range pids {
		if !processGone(p) {
			t.Errorf("process %d of the sandbox survived assay's SIGKILL", p)
		}
	}
	if !gone(leaf.Path) {
		t.Errorf("cgroup %s not removed by the watchdog", leaf.Path)
	}
	programsFreed(t, ids)

	r := e.run(nil, "--policy", pol, "--", "true")
	if r.status != 0 || strings.Contains(r.stderr, "stale") {
		t.Fatalf("next assay run: status %d\n%s", r.status, r.stderr)
	}
}

// TestRunSIGKILLNoWindow: a grandchild spinning on connect to a denied port
// while assay is killed with SIGKILL never gets through: the watchdog holds
// the programs until the PID namespace is dead.
func TestRunSIGKILLNoWindow(t *testing.T) {
	e := newEnv(t)
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan struct{}, 1024)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
			accepted <- struct{}{}
		}
	}()
	port := ln.Addr().(*net.TCPAddr).Port
	pol := e.policy(fmt.Sprintf("version: 1\nnetwork:\n  deny_ports: [{port: %d, id: 5}]\n", port))
	for round := 0; round < 5; round++ {
		s := e.start("--policy", pol, "--", "@", "connect-spin", ln.Addr().String())
		s.cmd.Process.Signal(syscall.SIGKILL)
		if status, _ := s.wait(t); status != 137 {
			t.Fatalf("assay status %d, want 137", status)
		}
	}
	select {
	case <-accepted:
		t.Errorf("a connect to the denied port got through while assay died")
	case <-time.After(200 * time.Millisecond):
	}
}
