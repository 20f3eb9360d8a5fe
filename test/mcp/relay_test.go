package mcp_test

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/assaymcp/assay/internal/assaytest"
	"github.com/assaymcp/assay/internal/mcptest"
)

// TestRelayByteExact: `assay run --mcp -- cat` echoes a fuzzed stream -
// JSON-RPC requests and responses, garbage, invalid UTF-8, blank lines, a
// 12 MiB line, no final newline - written in random pieces; what comes
// back on assay's stdout is byte for byte what went in, through both
// directions of the relay and a real server process.
func TestRelayByteExact(t *testing.T) {
	assaytest.Privileged(t)
	assay := mcptest.AssayBinary(t)
	t.Parallel()
	policy := filepath.Join(t.TempDir(), "policy.yaml")
	if err := os.WriteFile(policy, []byte("version: 1\nnetwork:\n  deny_ports: [9]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for seed := range uint64(3) {
		rng := rand.New(rand.NewPCG(seed, 42))
		var in bytes.Buffer
		for i := range 300 {
			if i == 150 {
				in.WriteString(`{"jsonrpc":"2.0","id":"big","result":{"text":"` + strings.Repeat("z", 12<<20) + "\"}}\n")
			}
			switch rng.IntN(5) {
			case 0:
				fmt.Fprintf(&in, `{"jsonrpc":"2.0","id":%d,"method":"tools/call","params":{"name":"t","arguments":{"n":%d}}}`+"\n", i, rng.Int())
			case 1:
				fmt.Fprintf(&in, `{"jsonrpc":"2.0","id":%d,"result":{"content":[]}}`+"\n", i)
			case 2:
				in.WriteString("not json {{{\n\n \r\n")
			case 3:
				b := make([]byte, rng.IntN(300))
				for j := range b {
					b[j] = byte(rng.IntN(256))
				}
				in.Write(b)
			case 4:
				in.WriteString(`{"jsonrpc":"2.0","method":"notifications/progress"}` + "\n")
			}
		}
		in.WriteString(`{"partial":`)
		want := in.Bytes()

		cmd := exec.Command(assay, "run", "--mcp", "--policy", policy, "--", "cat")
		stdin, err := cmd.StdinPipe()
		if err != nil {
			t.Fatal(err)
		}
		var out, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		go func() {
			b := want
			for len(b) > 0 {
				n := min(len(b), 1+rng.IntN(70000))
				if rng.IntN(3) == 0 {
					n = min(len(b), 1+rng.IntN(5))
				}
				if _, err := stdin.Write(b[:n]); err != nil {
					return
				}
				b = b[n:]
			}
			stdin.Close()
		}()
		err = cmd.Wait()
		if err != nil {
			t.Fatalf("seed %d: assay: %v\n%s", seed, err, stderr.String())
		}
		if !bytes.Equal(out.Bytes(), want) {
			i := 0
			for i < len(want) && i < out.Len() && want[i] == out.Bytes()[i] {
				i++
			}
			t.Fatalf("seed %d: %d bytes in, %d out, first difference at %d", seed, len(want), out.Len(), i)
		}
		t.Logf("seed %d: %d bytes relayed both ways unchanged", seed, len(want))
	}
}
