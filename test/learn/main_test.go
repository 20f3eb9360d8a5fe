// Package learn_test tests `assay learn` and `assay policy diff` end to
// end: the real binary, a real program (the system's python3) observed in a
// real sandbox, the policy it writes checked and then enforced by `assay
// run` (Landlock for files on this host, cgroup BPF for the network). They
// need root (CI=true turns a missing root into a failure).
package learn_test

import (
	"testing"

	"github.com/assaymcp/assay/internal/assaytest"
)

func TestMain(m *testing.M) { assaytest.Main(m) }
