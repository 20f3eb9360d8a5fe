package sandbox

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"time"

	"github.com/assaymcp/assay/internal/events"
	"github.com/assaymcp/assay/internal/mcp"
	"github.com/assaymcp/assay/internal/policy"
	"github.com/assaymcp/assay/internal/session"
	"golang.org/x/sys/unix"
)

// relayDrain bounds the wait, after the command's cgroup was removed, for
// the rest of its output to reach the client: every process that could
// hold the pipe is dead by then, so it ends at once unless a descriptor
// escaped the cgroup.
const relayDrain = 10 * time.Second

// mcpRelay is `assay run --mcp` (its methods do nothing on nil: no --mcp): the command's stdin and stdout are pipes
// to assay, which relays them to its own (package mcp).
type mcpRelay struct {
	relay     *mcp.Relay
	serverIn  *os.File // the command's ends, closed once it started
	serverOut *os.File
	done      chan error
	started   bool
}

// context is the tracker's lookup for the enforcement session, nil without a
// relay.
func (m *mcpRelay) context() func(uint64) []events.MCPCall {
	if m == nil {
		return nil
	}
	return m.relay.Tracker.At
}

// newMCPRelay makes the pipes and the tracker; MCP's options are o's.
func newMCPRelay(o Options) (*mcpRelay, error) {
	inR, inW, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("--mcp: %w", err)
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		inR.Close()
		inW.Close()
		return nil, fmt.Errorf("--mcp: %w", err)
	}
	growPipe(inW)
	growPipe(outW)
	var rules mcp.ToolRules
	if o.Policy.HasToolRules() {
		rules = o.Policy.ToolDecision
	}
	m := &mcpRelay{
		relay: &mcp.Relay{
			ClientIn: o.Stdin, ClientOut: o.Stdout, ServerIn: inW, ServerOut: outR,
			Tracker: mcp.NewTracker(), Rules: rules, Audit: policy.EffectiveMode(o.Policy, o.Audit) == policy.ModeAudit,
			OnCall: func(tool, outcome string) {
				o.Metrics.ToolCall(tool, outcome)
				if o.OnToolCall != nil {
					o.OnToolCall(tool, outcome)
				}
			},
		},
		serverIn: inR, serverOut: outW, done: make(chan error, 1),
	}
	return m, nil
}

// growPipe asks for a 1 MiB pipe buffer (the default is 64 KiB; the
// system's limit, fs.pipe-max-size, is 1 MiB by default): a large message
// then crosses the relay's pipe in one write instead of a wake-up of each
// side per 64 KiB. Best effort: the pipe works as it is otherwise.
func growPipe(f *os.File) {
	if rc, err := f.SyscallConn(); err == nil {
		_ = rc.Control(func(fd uintptr) { _, _ = unix.FcntlInt(fd, unix.F_SETPIPE_SZ, 1<<20) })
	}
}

// attach gives the command the pipes instead of assay's stdio.
func (m *mcpRelay) attach(cmd *exec.Cmd) {
	if m == nil {
		return
	}
	cmd.Stdin, cmd.Stdout = m.serverIn, m.serverOut
}

// start relays once the command runs: tool decisions become events of
// sess, attributed to the command's process pid in cgroup cg.
func (m *mcpRelay) start(sess *session.Session, pid int, cg uint64, onDecision func(mcp.Decision)) {
	if m == nil {
		return
	}
	m.serverIn.Close()
	m.serverOut.Close()
	m.started = true
	m.relay.OnDecision = func(d mcp.Decision) {
		v := events.VerdictBlocked
		if d.Audit {
			v = events.VerdictAudit
		}
		sess.Emit(events.Event{
			Kind: events.KindTool, Verdict: v, RuleID: d.RuleID, PID: uint32(pid), TID: uint32(pid),
			CgroupID: cg, MonoNS: d.Mono, Tool: d.Call.Tool, MCP: []events.MCPCall{d.Call},
		})
		if onDecision != nil {
			onDecision(d)
		}
	}
	go func() { m.done <- m.relay.Run() }()
}

// abort releases the pipes (after wait, or when the command never
// started).
func (m *mcpRelay) abort() {
	if m == nil {
		return
	}
	for _, f := range []io.Closer{m.serverIn, m.serverOut, m.relay.ServerIn, m.relay.ServerOut.(io.Closer)} {
		f.Close()
	}
}

// wait waits for the command's output to be relayed to the end, and
// reports a failure to write it to the client.
func (m *mcpRelay) wait(log io.Writer) {
	if m == nil || !m.started {
		return
	}
	select {
	case err := <-m.done:
		if err != nil {
			fmt.Fprintf(log, "assay: --mcp: relaying the server's output to the client: %v\n", err)
		}
	case <-time.After(relayDrain):
		fmt.Fprintf(log, "assay: --mcp: the server's stdout is still open %v after it exited (a descriptor escaped its cgroup?): closing it\n", relayDrain)
		m.relay.ServerOut.(io.Closer).Close()
		<-m.done
	}
}
