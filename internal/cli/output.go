package cli

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/assaymcp/assay/internal/events"
)

// jsonLines turns the "assay: ..." text lines written to it into one JSON
// object per line, {"type":"message","time":...,"message":...}, so that
// with --output json every line assay writes is JSON. Lines that already
// are JSON objects pass unchanged.
type jsonLines struct {
	mu  sync.Mutex
	w   io.Writer
	buf []byte
	now func() time.Time
}

func newJSONLines(w io.Writer) *jsonLines { return &jsonLines{w: w, now: time.Now} }

type jsonMessage struct {
	Schema  int    `json:"schema"`
	Type    string `json:"type"` // "message"
	Time    string `json:"time"`
	Message string `json:"message"`
}

func (j *jsonLines) Write(p []byte) (int, error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.buf = append(j.buf, p...)
	var out []byte
	for {
		i := bytes.IndexByte(j.buf, '\n')
		if i < 0 {
			break
		}
		out = append(out, j.encode(string(j.buf[:i]))...)
		j.buf = j.buf[i+1:]
	}
	if len(out) > 0 {
		if _, err := j.w.Write(out); err != nil {
			return 0, err
		}
	}
	return len(p), nil
}

// Flush writes a last, unterminated line.
func (j *jsonLines) Flush() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if len(j.buf) == 0 {
		return nil
	}
	out := j.encode(string(j.buf))
	j.buf = nil
	_, err := j.w.Write(out)
	return err
}

func (j *jsonLines) encode(line string) []byte {
	if strings.HasPrefix(line, "{") && json.Valid([]byte(line)) {
		return []byte(line + "\n") // already JSON (a summary sent to the log)
	}
	msg := strings.TrimPrefix(line, "assay: ")
	b, _ := json.Marshal(jsonMessage{Schema: events.SchemaVersion, Type: "message", Time: j.now().UTC().Format(events.JSONTime), Message: msg})
	return append(b, '\n')
}

// startRecord is the line `assay run --events FILE` appends to FILE before
// anything else of a run, so that runs appended to one file can be told
// apart.
type startRecord struct {
	Schema  int      `json:"schema"`
	Type    string   `json:"type"` // "start"
	Time    string   `json:"time"`
	PID     int      `json:"pid"`
	Version string   `json:"version"`
	Policy  string   `json:"policy"`
	Argv    []string `json:"argv"`
}

func writeStart(w io.Writer, json bool, policyFile string, argv []string, now time.Time) error {
	rec := startRecord{Schema: events.SchemaVersion, Type: "start", Time: now.UTC().Format(events.JSONTime), PID: os.Getpid(), Version: Version(), Policy: policyFile, Argv: argv}
	if json {
		return writeJSONLine(w, rec)
	}
	q := make([]string, len(argv))
	for i, a := range argv {
		q[i] = shellQuote(a)
	}
	_, err := fmt.Fprintf(w, "assay: %s start: pid %d, assay %s, policy %s, command: %s\n",
		now.UTC().Format(events.TextTime), rec.PID, rec.Version, shellQuote(policyFile), strings.Join(q, " "))
	return err
}

func writeJSONLine(w io.Writer, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	_, err = w.Write(append(b, '\n'))
	return err
}

// shellQuote quotes an argument that holds anything but plain characters,
// so that a line stays one line and reads back unambiguously.
func shellQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./:=@%+,") == "" {
		return s
	}
	return strconv.Quote(s)
}

// copyTo writes to w and a copy to the events file. A failed copy (a full
// disk) is reported by the event writer; the log itself goes on.
type copyTo struct {
	w, copy io.Writer
}

func (c copyTo) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.copy.Write(p)
	return n, err
}
