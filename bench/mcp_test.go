package bench_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/assaymcp/assay/bench/report"
	"github.com/assaymcp/assay/internal/assaytest"
)

// mcpEcho is the MCP server of figure 9 (the benchmark binary run with
// BENCH_MCP_ECHO=1): newline-delimited JSON-RPC on stdio, answering every
// request with a result that carries its params back (a response as large
// as the request).
func mcpEcho() {
	in := bufio.NewReaderSize(os.Stdin, 1<<20)
	out := bufio.NewWriterSize(os.Stdout, 1<<20)
	for {
		line, err := in.ReadBytes('\n')
		if len(bytes.TrimSpace(line)) > 0 {
			var req struct {
				ID     json.RawMessage `json:"id"`
				Params json.RawMessage `json:"params"`
			}
			if json.Unmarshal(line, &req) == nil && req.ID != nil {
				out.WriteString(`{"jsonrpc":"2.0","id":`)
				out.Write(req.ID)
				out.WriteString(`,"result":{"content":[],"echo":`)
				if req.Params == nil {
					req.Params = []byte("null")
				}
				out.Write(req.Params)
				out.WriteString("}}\n")
				out.Flush()
			}
		}
		if err != nil {
			return
		}
	}
}

// mcpPeer is a running server (direct, or under assay run --mcp) and the
// client's ends of its stdio.
type mcpPeer struct {
	cmd *exec.Cmd
	in  io.WriteCloser
	out *bufio.Reader
	id  int
}

func startMCPPeer(b *testing.B, argv []string) *mcpPeer {
	b.Helper()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), "BENCH_MCP_ECHO=1")
	cmd.Stderr = devNull(b)
	in, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	p := &mcpPeer{cmd: cmd, in: in, out: bufio.NewReaderSize(out, 4<<20)}
	b.Cleanup(func() {
		in.Close()
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	})
	return p
}

// call sends one tools/call request with payload bytes of argument and
// returns the time until its response line has arrived.
func (p *mcpPeer) call(b *testing.B, payload string) time.Duration {
	p.id++
	req := fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":"tools/call","params":{"name":"echo","arguments":{"text":%q}}}`+"\n", p.id, payload)
	t := time.Now()
	if _, err := io.WriteString(p.in, req); err != nil {
		b.Fatalf("write request: %v", err)
	}
	line, err := p.out.ReadBytes('\n')
	d := time.Since(t)
	if err != nil {
		b.Fatalf("read response: %v", err)
	}
	if !bytes.Contains(line[:min(len(line), 64)], []byte(fmt.Sprintf(`"id":%d,`, p.id))) {
		b.Fatalf("response %.80q does not answer request %d", line, p.id)
	}
	return d
}

// BenchmarkMCPRelay is figure 9: the latency `assay run --mcp` adds to a
// request/response round trip over the stdio transport, against the same
// server reached directly, with a small tools/call (about 120 bytes) and
// one carrying 1 MiB. Both servers run for the whole benchmark; requests
// alternate between them in chunks, in rotated order.
func BenchmarkMCPRelay(b *testing.B) {
	privileged(b)
	// A copy of this binary every user can run (`assay run` starts the
	// server as nobody).
	dir, err := os.MkdirTemp("", "assay-bench-mcp-")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o755)
	exe := filepath.Join(dir, "echo-server")
	data, err := os.ReadFile(self(b))
	if err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(exe, data, 0o755); err != nil {
		b.Fatal(err)
	}
	direct := startMCPPeer(b, []string{exe})
	relayed := startMCPPeer(b, []string{assaytest.Binary(b), "run", "--mcp", "--", exe})
	peers := []*mcpPeer{direct, relayed}
	R := rounds()
	for _, c := range []struct {
		name  string
		size  int
		chunk int
	}{
		{"tools/call round trip, small (~120 B)", 16, 50},
		{"tools/call round trip, 1 MiB argument", 1 << 20, 3},
	} {
		if quick() {
			c.chunk = max(c.chunk/5, 1)
		}
		payload := strings.Repeat("x", c.size)
		for _, p := range peers { // warm-up
			p.call(b, payload)
		}
		med := make([][]float64, 2) // per peer, per round: median µs
		all := make([][]float64, 2) // every call, for p99
		for r := 0; r < R; r++ {
			round := make([][]float64, 2)
			for k := 0; k < 10; k++ {
				for j := range peers {
					i := (j + k + r) % 2
					for n := 0; n < c.chunk; n++ {
						us := float64(peers[i].call(b, payload).Nanoseconds()) / 1e3
						round[i] = append(round[i], us)
						all[i] = append(all[i], us)
					}
				}
			}
			for i := range peers {
				med[i] = append(med[i], report.Median(round[i]))
			}
		}
		row := report.Row{Figure: "9 MCP relay", Case: c.name, Variant: "direct stdio (baseline)", Unit: "µs", Raw: med[0]}
		row.Value = report.Median(med[0])
		row.Note = fmt.Sprintf("p99 %.0f µs over %d calls", report.Quantile(all[0], 0.99), len(all[0]))
		record(b, row)
		row = report.Row{Figure: "9 MCP relay", Case: c.name, Variant: "`assay run --mcp`", Unit: "µs"}
		row.SetOverhead(med[1], med[0], nan)
		d := make([]float64, len(med[1]))
		for i := range d {
			d[i] = med[1][i] - med[0][i]
		}
		row.Note = fmt.Sprintf("added %.0f µs per round trip (median of per-round differences); p99 %.0f µs over %d calls", report.Median(d), report.Quantile(all[1], 0.99), len(all[1]))
		record(b, row)
	}
}
