package mcptest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// CommandTransport is an [mcp.Transport] that runs a command and speaks
// MCP's stdio transport (newline-delimited JSON-RPC) with it, like
// [mcp.CommandTransport], and also records every byte the command wrote to
// its stdout and every byte the client wrote to its stdin, so that a test
// can check that nothing but JSON-RPC crossed the pipe.
//
// The messages themselves go through the SDK's own stdio codec
// ([mcp.IOTransport]); only the process handling is this type's. Its stdout
// is read to the end of file, even after the SDK stops reading, so that
// bytes written while shutting down are recorded too.
//
// Close follows the stdio transport's shutdown: close the command's stdin,
// wait for it to exit, SIGTERM after TerminateDuration, SIGKILL after as
// long again.
type CommandTransport struct {
	Command *exec.Cmd
	// TerminateDuration: how long Close waits after closing stdin before
	// sending SIGTERM (default 10s).
	TerminateDuration time.Duration

	mu       sync.Mutex
	out      bytes.Buffer // the command's stdout: server -> client
	in       bytes.Buffer // the command's stdin: client -> server
	started  bool
	stdout   *os.File
	eof      chan struct{} // closed when the command's stdout reached EOF
	exited   chan struct{} // closed when Wait returned
	readErr  error         // a stdout read error other than EOF
	waitErr  error
	signaled []string // signals Close had to send
}

// Connect starts the command and returns the SDK's stdio connection over
// its pipes.
func (t *CommandTransport) Connect(context.Context) (mcp.Connection, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.started {
		return nil, errors.New("mcptest.CommandTransport: Connect called twice")
	}
	if t.Command.Stdout != nil {
		return nil, errors.New("mcptest.CommandTransport: Stdout already set")
	}
	// Our own pipe rather than StdoutPipe: Wait closes a StdoutPipe as soon
	// as the process exits, losing what is still unread, while this one is
	// read to EOF whatever Wait does.
	stdout, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	t.Command.Stdout = w
	stdin, err := t.Command.StdinPipe()
	if err != nil {
		stdout.Close()
		w.Close()
		return nil, err
	}
	err = t.Command.Start()
	w.Close()
	if err != nil {
		stdout.Close()
		return nil, err
	}
	t.started = true
	t.stdout = stdout
	t.eof = make(chan struct{})
	t.exited = make(chan struct{})
	go func() {
		err := t.Command.Wait()
		t.mu.Lock()
		t.waitErr = err
		t.mu.Unlock()
		close(t.exited)
	}()
	pr, pw := io.Pipe()
	go t.pump(stdout, pw)
	return (&mcp.IOTransport{
		Reader: pr,
		Writer: &stdinWriter{t: t, w: stdin},
	}).Connect(context.Background())
}

// pump copies the command's stdout to the SDK's reader, recording it, and
// keeps reading (and recording) to EOF after the SDK closed its end.
func (t *CommandTransport) pump(stdout io.Reader, pw *io.PipeWriter) {
	defer close(t.eof)
	forward := true
	buf := make([]byte, 64<<10)
	for {
		n, err := stdout.Read(buf)
		if n > 0 {
			t.mu.Lock()
			t.out.Write(buf[:n])
			t.mu.Unlock()
			if forward {
				if _, werr := pw.Write(buf[:n]); werr != nil {
					forward = false
				}
			}
		}
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, os.ErrClosed) {
				t.mu.Lock()
				t.readErr = err
				t.mu.Unlock()
			}
			pw.CloseWithError(err)
			return
		}
	}
}

type stdinWriter struct {
	t    *CommandTransport
	w    io.WriteCloser
	once sync.Once
	err  error
}

func (s *stdinWriter) Write(p []byte) (int, error) {
	n, err := s.w.Write(p)
	s.t.mu.Lock()
	s.t.in.Write(p[:n])
	s.t.mu.Unlock()
	return n, err
}

// Close ends the session the stdio way and reaps the command.
func (s *stdinWriter) Close() error {
	s.once.Do(func() { s.err = s.t.shutdown(s.w) })
	return s.err
}

func (t *CommandTransport) shutdown(stdin io.Closer) error {
	stdin.Close()
	td := t.TerminateDuration
	if td <= 0 {
		td = 10 * time.Second
	}
	p := t.Command.Process
	wait := func(c <-chan struct{}) bool {
		select {
		case <-c:
			return true
		case <-time.After(td):
			return false
		}
	}
	if !wait(t.exited) {
		t.noteSignal("SIGTERM")
		_ = p.Signal(syscall.SIGTERM)
		if !wait(t.exited) {
			t.noteSignal("SIGKILL")
			_ = p.Kill()
			<-t.exited
		}
	}
	// The command has exited. Its stdout reaches EOF unless a descendant
	// still holds it: give that a grace period, then stop reading.
	if !wait(t.eof) {
		t.mu.Lock()
		t.readErr = fmt.Errorf("stdout still open %v after the command exited (a descendant holds it)", td)
		t.mu.Unlock()
		t.stdout.Close()
		<-t.eof
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	var ee *exec.ExitError
	if errors.As(t.waitErr, &ee) {
		return nil // the exit status is for ExitCode, not a transport failure
	}
	return t.waitErr
}

// abort kills the command, if it was started and is still running, and
// waits until it is reaped and its stdout is drained (or 10s have passed).
func (t *CommandTransport) abort() {
	t.mu.Lock()
	started := t.started
	t.mu.Unlock()
	if !started {
		return
	}
	_ = t.Command.Process.Kill()
	<-t.exited
	select {
	case <-t.eof:
	case <-time.After(10 * time.Second):
		t.stdout.Close()
		<-t.eof
	}
}

func (t *CommandTransport) noteSignal(s string) {
	t.mu.Lock()
	t.signaled = append(t.signaled, s)
	t.mu.Unlock()
}

// Stdout returns the bytes the command wrote to its stdout so far.
func (t *CommandTransport) Stdout() []byte {
	t.mu.Lock()
	defer t.mu.Unlock()
	return bytes.Clone(t.out.Bytes())
}

// Stdin returns the bytes the client wrote to the command's stdin so far.
func (t *CommandTransport) Stdin() []byte {
	t.mu.Lock()
	defer t.mu.Unlock()
	return bytes.Clone(t.in.Bytes())
}

// Signaled lists the signals Close had to send because the command did not
// exit after its stdin was closed.
func (t *CommandTransport) Signaled() []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return append([]string(nil), t.signaled...)
}

// ReadErr is a read error on the command's stdout other than EOF.
func (t *CommandTransport) ReadErr() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.readErr
}

// Message is one JSON-RPC 2.0 message of a recorded stream.
type Message struct {
	JSONRPC string          `json:"jsonrpc"`
	ID      json.RawMessage `json:"id,omitempty"`
	Method  string          `json:"method,omitempty"`
	Params  json.RawMessage `json:"params,omitempty"`
	Result  json.RawMessage `json:"result,omitempty"`
	Error   json.RawMessage `json:"error,omitempty"`
}

// IsRequest: a method call with an id. IsNotification: one without.
// IsResponse: a result or an error for an id.
func (m Message) IsRequest() bool      { return m.Method != "" && m.ID != nil }
func (m Message) IsNotification() bool { return m.Method != "" && m.ID == nil }
func (m Message) IsResponse() bool     { return m.Method == "" && m.ID != nil }

// ParseStream checks that b is exactly a sequence of newline-terminated
// JSON-RPC 2.0 messages, one JSON object per line, with nothing else: no
// blank line, no surrounding whitespace, no carriage return, no partial
// last line, no batch. It returns the messages, or an error naming the
// first offending line (1-based) and quoting it.
func ParseStream(b []byte) ([]Message, error) {
	if len(b) == 0 {
		return nil, nil
	}
	if b[len(b)-1] != '\n' {
		i := bytes.LastIndexByte(b, '\n')
		return nil, fmt.Errorf("the stream ends with a partial line (no newline): %s", quote(b[i+1:]))
	}
	var msgs []Message
	for n, line := range bytes.Split(b[:len(b)-1], []byte("\n")) {
		m, err := parseLine(line)
		if err != nil {
			return msgs, fmt.Errorf("line %d: %v: %s", n+1, err, quote(line))
		}
		msgs = append(msgs, m)
	}
	return msgs, nil
}

func parseLine(line []byte) (Message, error) {
	var m Message
	switch {
	case len(line) == 0:
		return m, errors.New("empty line")
	case !bytes.Equal(bytes.TrimSpace(line), line):
		return m, errors.New("whitespace around the message")
	case line[0] != '{':
		return m, errors.New("not a JSON object")
	case !json.Valid(line):
		return m, errors.New("not valid JSON")
	}
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&m); err != nil {
		return m, fmt.Errorf("not a JSON-RPC message: %v", err)
	}
	if m.JSONRPC != "2.0" {
		return m, fmt.Errorf("jsonrpc is %q, want \"2.0\"", m.JSONRPC)
	}
	if m.ID != nil && !validID(m.ID) {
		return m, fmt.Errorf("id %s is not a string or a number", m.ID)
	}
	switch {
	case m.Method != "":
		if m.Result != nil || m.Error != nil {
			return m, errors.New("a request or notification with a result or error")
		}
	case m.ID == nil:
		return m, errors.New("neither a method nor an id")
	case (m.Result == nil) == (m.Error == nil):
		return m, errors.New("a response needs exactly one of result and error")
	}
	return m, nil
}

func validID(raw json.RawMessage) bool {
	var v any
	if json.Unmarshal(raw, &v) != nil {
		return false
	}
	switch v.(type) {
	case string, float64:
		return true
	}
	return false
}

// CheckExchange checks a whole session: both directions are clean streams
// (ParseStream), and every request one side sent got exactly one response
// from the other side, which never answered anything it was not asked.
func CheckExchange(clientToServer, serverToClient []byte) error {
	c2s, err := ParseStream(clientToServer)
	if err != nil {
		return fmt.Errorf("client to server: %w", err)
	}
	s2c, err := ParseStream(serverToClient)
	if err != nil {
		return fmt.Errorf("server to client (the command's stdout): %w", err)
	}
	if err := answered(c2s, s2c); err != nil {
		return fmt.Errorf("client requests: %w", err)
	}
	if err := answered(s2c, c2s); err != nil {
		return fmt.Errorf("server requests: %w", err)
	}
	return nil
}

func answered(requests, responses []Message) error {
	pending := map[string]string{} // id -> method
	for _, m := range requests {
		if m.IsRequest() {
			if _, dup := pending[string(m.ID)]; dup {
				return fmt.Errorf("id %s used twice", m.ID)
			}
			pending[string(m.ID)] = m.Method
		}
	}
	for _, m := range responses {
		if !m.IsResponse() {
			continue
		}
		if _, ok := pending[string(m.ID)]; !ok {
			return fmt.Errorf("a response to id %s, which is not an outstanding request", m.ID)
		}
		delete(pending, string(m.ID))
	}
	for id, method := range pending {
		return fmt.Errorf("%s request id %s was never answered", method, id)
	}
	return nil
}

func quote(b []byte) string {
	const max = 300
	if len(b) > max {
		return fmt.Sprintf("%q... (%d bytes)", b[:max], len(b))
	}
	return fmt.Sprintf("%q", b)
}
