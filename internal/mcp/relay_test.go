package mcp

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"path"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/assaymcp/assay/internal/events"
)

// pipeline runs a Relay between in-memory pipes: the test plays the client
// (writes c2r, reads r2c) and the server (reads r2s, writes s2r).
type pipeline struct {
	relay            *Relay
	clientW, serverW *io.PipeWriter
	clientR, serverR *io.PipeReader
	done             chan error
}

func startRelay(t testing.TB, setup func(*Relay)) *pipeline {
	t.Helper()
	cr, cw := io.Pipe() // client -> relay
	rr, rw := io.Pipe() // relay -> client
	sr, sw := io.Pipe() // server -> relay
	tr, tw := io.Pipe() // relay -> server
	p := &pipeline{clientW: cw, clientR: rr, serverW: sw, serverR: tr, done: make(chan error, 1)}
	p.relay = &Relay{ClientIn: cr, ClientOut: rw, ServerIn: tw, ServerOut: sr}
	if setup != nil {
		setup(p.relay)
	}
	go func() {
		err := p.relay.Run()
		rw.Close()
		p.done <- err
	}()
	return p
}

// writeChunks writes b in pieces of random sizes (1 byte to 100 KiB).
func writeChunks(w io.WriteCloser, b []byte, rng *rand.Rand) {
	for len(b) > 0 {
		n := 1 + rng.IntN(min(len(b), 100<<10))
		if rng.IntN(4) == 0 {
			n = min(len(b), 1+rng.IntN(7))
		}
		if _, err := w.Write(b[:n]); err != nil {
			return
		}
		b = b[n:]
	}
	w.Close()
}

// stream makes a random stream: JSON-RPC requests, responses and
// notifications, garbage, blank lines, lines with CRs, invalid UTF-8, long
// lines (some over maxLine), and maybe no final newline.
func stream(rng *rand.Rand, n, maxLine int) []byte {
	var b bytes.Buffer
	for i := range n {
		switch rng.IntN(9) {
		case 0:
			fmt.Fprintf(&b, `{"jsonrpc":"2.0","id":%d,"method":"tools/call","params":{"name":"t%d","arguments":{}}}`+"\n", i, rng.IntN(5))
		case 1:
			fmt.Fprintf(&b, `{"jsonrpc":"2.0","id":%d,"result":{"content":[{"type":"text","text":"x"}]}}`+"\n", rng.IntN(n+1))
		case 2:
			fmt.Fprintf(&b, `{"jsonrpc":"2.0","method":"notifications/progress","params":{"progress":%d}}`+"\n", i)
		case 3:
			b.WriteString("garbage: not { json\n")
		case 4:
			b.WriteString("\n\r\n  \n")
		case 5:
			b.Write([]byte{0xff, 0xfe, '{', '"', 0x00, '\n'})
		case 6:
			fmt.Fprintf(&b, `{"jsonrpc":"2.0","id":"s%d","result":{"tools":[{"name":"a"},{"name":"b"}]}}`+"\n", i)
		case 7:
			size := rng.IntN(3 * maxLine)
			b.WriteString(`{"jsonrpc":"2.0","id":1,"result":{"blob":"`)
			b.WriteString(strings.Repeat("y", size))
			b.WriteString("\"}}\n")
		case 8:
			fmt.Fprintf(&b, `[{"jsonrpc":"2.0","id":%d,"method":"ping"},{"jsonrpc":"2.0","method":"x"}]`+"\n", i)
		}
	}
	if rng.IntN(2) == 0 {
		b.WriteString(`{"unterminated": true`)
	}
	return b.Bytes()
}

// relayBoth sends a stream each way at once and returns what arrived.
func relayBoth(t testing.TB, p *pipeline, toServer, toClient []byte, seed uint64) (atServer, atClient []byte) {
	t.Helper()
	var wg sync.WaitGroup
	wg.Add(4)
	go func() { defer wg.Done(); writeChunks(p.clientW, toServer, rand.New(rand.NewPCG(seed, 1))) }()
	go func() { defer wg.Done(); writeChunks(p.serverW, toClient, rand.New(rand.NewPCG(seed, 2))) }()
	go func() { defer wg.Done(); atServer, _ = io.ReadAll(p.serverR) }()
	go func() { defer wg.Done(); atClient, _ = io.ReadAll(p.clientR) }()
	wg.Wait()
	if err := <-p.done; err != nil {
		t.Fatalf("relay: %v", err)
	}
	return atServer, atClient
}

// TestRelayByteExact: without tool rules, every byte passes unchanged both
// ways, whatever the stream (JSON-RPC, garbage, huge lines, no final
// newline) and however it is cut into reads and writes.
func TestRelayByteExact(t *testing.T) {
	for seed := range uint64(20) {
		rng := rand.New(rand.NewPCG(seed, 0))
		maxLine := 1 << (8 + rng.IntN(10))
		toServer, toClient := stream(rng, 200, maxLine), stream(rng, 200, maxLine)
		p := startRelay(t, func(r *Relay) { r.MaxLine = maxLine })
		atServer, atClient := relayBoth(t, p, toServer, toClient, seed)
		if !bytes.Equal(atServer, toServer) {
			t.Fatalf("seed %d: client->server differs: sent %d bytes, got %d", seed, len(toServer), len(atServer))
		}
		if !bytes.Equal(atClient, toClient) {
			t.Fatalf("seed %d: server->client differs: sent %d bytes, got %d", seed, len(toClient), len(atClient))
		}
	}
}

// FuzzRelay: any input, cut anywhere, passes both ways unchanged.
func FuzzRelay(f *testing.F) {
	f.Add([]byte(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x"}}`+"\n"), []byte("garbage\n{"), uint64(1))
	f.Add([]byte("\n\n\xff"), []byte(`[{"id":1,"result":{"tools":[]}}]`), uint64(2))
	f.Fuzz(func(t *testing.T, a, b []byte, seed uint64) {
		p := startRelay(t, func(r *Relay) { r.MaxLine = 16 })
		atServer, atClient := relayBoth(t, p, a, b, seed)
		if !bytes.Equal(atServer, a) || !bytes.Equal(atClient, b) {
			t.Fatalf("relay changed the stream: %q -> %q, %q -> %q", a, atServer, b, atClient)
		}
	})
}

func lines(b []byte) []string {
	return strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
}

// TestTrackerFollowsRequests: a request is in flight from just before it is
// forwarded until its response is read, whatever the form of the response's
// id; events between requests get no context; several in flight are all
// named, oldest first; a cancelled request ends when the cancel is
// forwarded.
func TestTrackerFollowsRequests(t *testing.T) {
	p := startRelay(t, nil)
	tr := p.relay.Tracker
	for tr == nil {
		time.Sleep(time.Millisecond)
		tr = p.relay.Tracker
	}
	fromServer := make(chan string, 16)
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := p.serverR.Read(buf)
			if n > 0 {
				fromServer <- string(buf[:n])
			}
			if err != nil {
				close(fromServer)
				return
			}
		}
	}()
	go io.Copy(io.Discard, p.clientR)
	send := func(w io.Writer, s string) {
		t.Helper()
		if _, err := io.WriteString(w, s+"\n"); err != nil {
			t.Fatal(err)
		}
	}
	waitServer := func(want string) {
		t.Helper()
		if got := <-fromServer; got != want+"\n" {
			t.Fatalf("server got %q, want %q", got, want)
		}
	}
	before := Monotonic()
	call7 := `{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"read_file","arguments":{"path":"/x"}}}`
	send(p.clientW, call7)
	waitServer(call7)
	mid := Monotonic()
	list := `{"jsonrpc":"2.0","id":"b","method":"tools/list"}`
	send(p.clientW, list)
	waitServer(list)
	both := Monotonic()
	if got := tr.At(before); got != nil {
		t.Errorf("before any request: %v", got)
	}
	if got := tr.At(mid); len(got) != 1 || got[0].Tool != "read_file" || string(got[0].ID) != "7" || got[0].Method != "tools/call" {
		t.Errorf("one in flight: %+v", got)
	}
	if got := tr.At(both); len(got) != 2 || got[0].Tool != "read_file" || got[1].Method != "tools/list" || string(got[1].ID) != `"b"` {
		t.Errorf("two in flight: %+v", got)
	}
	// The response spells the id 7.0: the same request.
	send(p.serverW, `{"jsonrpc":"2.0","id":7.0,"result":{"content":[]}}`)
	for tr.InFlight() != 1 {
		time.Sleep(time.Millisecond)
	}
	after7 := Monotonic()
	if got := tr.At(after7); len(got) != 1 || got[0].Method != "tools/list" {
		t.Errorf("after 7's answer: %+v", got)
	}
	if got := tr.At(both); len(got) != 2 {
		t.Errorf("history: %+v", got)
	}
	cancel := `{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":"b"}}`
	send(p.clientW, cancel)
	waitServer(cancel)
	for tr.InFlight() != 0 {
		time.Sleep(time.Millisecond)
	}
	if got := tr.At(Monotonic()); got != nil {
		t.Errorf("between requests: %v", got)
	}
	p.clientW.Close()
	p.serverW.Close()
	<-p.done
}

func denyRules(patterns ...string) ToolRules {
	return func(name string) (uint32, bool) {
		for i, p := range patterns {
			if ok, _ := path.Match(p, name); ok {
				return uint32(i + 1), true
			}
		}
		return 0, false
	}
}

// TestToolRules: a refused tools/call never reaches the server and the
// client gets a JSON-RPC error with the request's id; allowed calls pass
// byte for byte; tools/list results lose the refused tools; what cannot be
// checked (not JSON, a tool name that is not a string, a name spelt with
// another case) is refused; in a batch only the refused call is taken out.
func TestToolRules(t *testing.T) {
	var mu sync.Mutex
	var decisions []Decision
	outcomes := map[string]int{}
	p := startRelay(t, func(r *Relay) {
		r.Rules = denyRules("write_file", "delete_*")
		r.OnDecision = func(d Decision) { mu.Lock(); decisions = append(decisions, d); mu.Unlock() }
		r.OnCall = func(tool, outcome string) { mu.Lock(); outcomes[tool+" "+outcome]++; mu.Unlock() }
	})
	toServer := strings.Join([]string{
		`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"read_file"}}`,
		`{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"write_file","arguments":{"path":"/etc/x"}}}`,
		`{"jsonrpc":"2.0","id":"three","method":"tools/call","params":{"name":"delete_everything"}}`,
		`{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"Name":"read_file","name":"delete_x"}}`,
		`{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":7}}`,
		`{"jsonrpc":"2.0","id":6,"method":"tools/call","params":{"name":"write_file","x":NaN}}`,
		`[{"jsonrpc":"2.0","id":8,"method":"tools/call","params":{"name":"write_file"}},{"jsonrpc":"2.0","id":9,"method":"ping"}]`,
		`{"jsonrpc":"2.0","method":"tools/call","params":{"name":"delete_quietly"}}`,
		`{"jsonrpc":"2.0","id":10,"method":"tools/list"}`,
	}, "\n") + "\n"
	toClient := `{"jsonrpc":"2.0","id":10,"result":{"tools":[{"name":"read_file","description":"r"},{"name":"write_file"},{"name":"delete_all"},{"name":"list"}],"nextCursor":"c"}}` + "\n" +
		`{"jsonrpc":"2.0","id":1,"result":{"isError":true,"content":[]}}` + "\n"
	var wg sync.WaitGroup
	var atServer, atClient []byte
	wg.Add(2)
	go func() { defer wg.Done(); atServer, _ = io.ReadAll(p.serverR) }()
	go func() { defer wg.Done(); atClient, _ = io.ReadAll(p.clientR) }()
	io.WriteString(p.clientW, toServer)
	p.clientW.Close()
	// Answer only once the client's lines are all through.
	for p.relay.Tracker.InFlight() < 3 {
		time.Sleep(time.Millisecond)
	}
	io.WriteString(p.serverW, toClient)
	p.serverW.Close()
	wg.Wait()
	<-p.done

	wantServer := strings.Join([]string{
		`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"read_file"}}`,
		`[{"id":9,"jsonrpc":"2.0","method":"ping"}]`,
		`{"jsonrpc":"2.0","id":10,"method":"tools/list"}`,
	}, "\n") + "\n"
	if string(atServer) != wantServer {
		t.Errorf("the server got:\n%s\nwant:\n%s", atServer, wantServer)
	}
	got := lines(atClient)
	type rpcErr struct {
		ID    json.RawMessage `json:"id"`
		Error *struct {
			Code    int    `json:"code"`
			Message string `json:"message"`
			Data    struct {
				Tool   string `json:"tool"`
				RuleID uint32 `json:"rule_id"`
			} `json:"data"`
		} `json:"error"`
	}
	wantErrs := []struct {
		id, tool string
		rule     uint32
		code     int
	}{{"2", "write_file", 1, ErrorCode}, {`"three"`, "delete_everything", 2, ErrorCode}, {"4", "delete_x", 2, ErrorCode},
		{"5", "", 0, ErrorCode}, {"null", "", 0, -32700}}
	if len(got) != len(wantErrs)+3 {
		t.Fatalf("the client got %d lines:\n%s", len(got), atClient)
	}
	for i, w := range wantErrs {
		var e rpcErr
		if err := json.Unmarshal([]byte(got[i]), &e); err != nil || e.Error == nil || string(e.ID) != w.id || e.Error.Code != w.code ||
			e.Error.Data.Tool != w.tool || e.Error.Data.RuleID != w.rule || !strings.HasPrefix(e.Error.Message, "assay: ") {
			t.Errorf("line %d: %s; want the error for id %s (tool %q rule %d code %d)", i, got[i], w.id, w.tool, w.rule, w.code)
		}
	}
	if batch := got[len(wantErrs)]; !strings.HasPrefix(batch, `[{"jsonrpc":"2.0","id":8,"error":{"code":-32003,`) {
		t.Errorf("batch error %s", batch)
	}
	var list struct {
		Result struct {
			Tools []struct {
				Name string `json:"name"`
			} `json:"tools"`
			NextCursor string `json:"nextCursor"`
		} `json:"result"`
	}
	if err := json.Unmarshal([]byte(got[len(wantErrs)+1]), &list); err != nil || len(list.Result.Tools) != 2 ||
		list.Result.Tools[0].Name != "read_file" || list.Result.Tools[1].Name != "list" || list.Result.NextCursor != "c" {
		t.Errorf("tools/list result %s", got[len(wantErrs)+1])
	}
	if got[len(got)-1] != `{"jsonrpc":"2.0","id":1,"result":{"isError":true,"content":[]}}` {
		t.Errorf("a result passed changed: %s", got[len(got)-1])
	}
	mu.Lock()
	defer mu.Unlock()
	if len(decisions) != 6 {
		t.Errorf("decisions %+v", decisions)
	}
	for _, k := range []string{"write_file blocked", "delete_everything blocked", "delete_x blocked", "delete_quietly blocked", "read_file error"} {
		if outcomes[k] == 0 {
			t.Errorf("no %q in %v", k, outcomes)
		}
	}
}

// TestToolRulesAudit: in audit mode the calls a rule would refuse reach
// the server, reported as such, and tools/list is left whole.
func TestToolRulesAudit(t *testing.T) {
	var decisions []Decision
	p := startRelay(t, func(r *Relay) {
		r.Rules, r.Audit = denyRules("write_file"), true
		r.OnDecision = func(d Decision) { decisions = append(decisions, d) }
	})
	toServer := `{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"write_file"}}` + "\nnot json\n"
	toClient := `{"jsonrpc":"2.0","id":10,"result":{"tools":[{"name":"write_file"}]}}` + "\n"
	atServer, atClient := relayBoth(t, p, []byte(toServer), []byte(toClient), 1)
	if string(atServer) != toServer || string(atClient) != toClient {
		t.Errorf("audit changed the stream: %q %q", atServer, atClient)
	}
	if len(decisions) != 1 || !decisions[0].Audit || decisions[0].Call.Tool != "write_file" || string(decisions[0].Call.ID) != "2" {
		t.Errorf("decisions %+v", decisions)
	}
}

// TestIDKey: ids match by value.
func TestIDKey(t *testing.T) {
	same := [][]string{{"7", "7.0", "7e0", " 7 "}, {`"a"`, `"\u0061"`}, {"-1", "-1.0"}}
	for _, group := range same {
		for _, id := range group {
			if idKey(json.RawMessage(id)) != idKey(json.RawMessage(group[0])) {
				t.Errorf("%s and %s differ", id, group[0])
			}
		}
	}
	if idKey(json.RawMessage("7")) == idKey(json.RawMessage(`"7"`)) {
		t.Error("a number and a string are one id")
	}
	_ = events.MCPCall{}
}
