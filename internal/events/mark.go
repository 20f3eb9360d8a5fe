package events

import (
	"bytes"
	"crypto/rand"
	"encoding/base32"
	"io"
	"strings"
	"sync"
)

// Telling assay's lines from the command's. `assay run` shares stderr with
// the command it runs, which may print anything, including byte-exact
// copies of assay's lines from another run. So every line assay writes
// during a run starts with a token drawn at random for that run, which the
// command has no way to read (it lives in assay's memory only; the command
// runs as another user, under seccomp, in its own PID namespace):
//
//	[assay:k7yq3mfx2lapd4ue] [PID 4242] 🛡️ BLOCKED CONNECT: dst=…
//	{"token":"k7yq3mfx2lapd4ue","schema":1,"type":"event",…}
//
// The first line of the run names the token. A line is assay's only if it
// starts with that run's token (or carries it as "token", first member of
// a JSON line); text before a token on the same line is someone else's.

// TokenLen is the length of a token: 16 base32 characters, 80 random bits.
const TokenLen = 16

// NewToken draws a token.
func NewToken() string {
	var b [10]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic("crypto/rand: " + err.Error()) // never fails on Linux
	}
	return strings.ToLower(base32.StdEncoding.EncodeToString(b[:]))
}

// TokenPrefix is how a text line carrying token starts.
func TokenPrefix(token string) string { return "[assay:" + token + "] " }

// Genuine reports whether line (without its newline) is one that assay
// wrote under token: a text line starting with TokenPrefix(token), or a
// JSON line whose first member is "token":token.
func Genuine(line, token string) bool {
	return strings.HasPrefix(line, TokenPrefix(token)) || strings.HasPrefix(line, `{"token":"`+token+`",`)
}

// Marker writes through to w, starting every line with the token: text
// lines with TokenPrefix, JSON lines (those starting with '{') with a
// "token" member first. Lines may arrive in any number of writes. It is
// safe for concurrent use; give everything that writes to one file the
// same Marker so that their lines are not cut.
type Marker struct {
	mu    sync.Mutex
	w     io.Writer
	token string
	mid   bool // the last write ended inside a line
	buf   []byte
}

// NewMarker marks lines written to w with token.
func NewMarker(w io.Writer, token string) *Marker { return &Marker{w: w, token: token} }

// Token is the marker's token.
func (m *Marker) Token() string { return m.token }

// Write writes p, marking each line that starts in it.
func (m *Marker) Write(p []byte) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := m.buf[:0]
	for rest := p; len(rest) > 0; {
		if !m.mid {
			if rest[0] == '{' {
				out = append(out, `{"token":"`...)
				out = append(out, m.token...)
				out = append(out, `",`...)
				rest = rest[1:]
			} else {
				out = append(out, TokenPrefix(m.token)...)
			}
			m.mid = true
		}
		i := bytes.IndexByte(rest, '\n')
		if i < 0 {
			out = append(out, rest...)
			break
		}
		out = append(out, rest[:i+1]...)
		rest = rest[i+1:]
		m.mid = false
	}
	m.buf = out
	if _, err := m.w.Write(out); err != nil {
		return 0, err
	}
	return len(p), nil
}
