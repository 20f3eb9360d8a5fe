package landlock

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestAllowExactness checks which rules the allow model can enforce
// exactly (the enforcement itself is tested end to end in test/run).
func TestAllowExactness(t *testing.T) {
	abi := requireLandlock(t)
	root := t.TempDir()
	for _, f := range []string{"r/f", "r/secret", "r/dir/f", "rw/f", "rw/.env", "rx/ronly", "rx/sub/f"} {
		p := filepath.Join(root, f)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	j := func(p string) string { return filepath.Join(root, p) }
	rules := []PathRule{
		{Path: j("r"), Access: Read, ID: 1},
		{Path: j("r/secret"), Access: 0, ID: 2},          // exact: file rights only, no w
		{Path: j("r/dir"), Access: 0, ID: 3},             // not exact: listing
		{Path: j("rw"), Access: Read | Write, ID: 4},     //
		{Path: j("rw/.env"), Access: 0, ID: 5},           // not exact: writable tree
		{Path: j("rx"), Access: Read | Exec, ID: 6},      //
		{Path: j("rx/ronly"), Access: Read, ID: 7},       // exact: x only
		{Path: j("rx/sub"), Access: Read | Write, ID: 8}, // more rights: exact
	}
	res, err := Allow(abi, 0, rules)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Close()
	want := map[uint32]string{1: "", 2: "", 3: "listed", 4: "", 5: "writable tree", 6: "", 7: "", 8: ""}
	for _, st := range res.Status {
		w := want[st.ID]
		if (w == "") != st.Enforced || !strings.Contains(st.Reason, w) {
			t.Errorf("rule %d (%s): enforced %v, reason %q; want reason containing %q", st.ID, st.Path, st.Enforced, st.Reason, w)
		}
	}
	// The entries of r and rx were granted one by one (for 2 and 7).
	if strings.Join(res.Split, " ") != j("r")+" "+j("rx") {
		t.Errorf("Split = %v", res.Split)
	}

	// Under default allow every restriction is in a writable tree.
	res2, err := Allow(abi, Read|Write|Exec, []PathRule{{Path: j("r"), Access: Read, ID: 9}})
	if err != nil {
		t.Fatal(err)
	}
	defer res2.Close()
	if st := res2.Status[0]; st.Enforced || !strings.Contains(st.Reason, "writable tree") {
		t.Errorf("default allow: %+v", st)
	}

	// A missing path or a symlink is an error naming it.
	os.Symlink(j("r"), j("link"))
	for _, p := range []string{j("missing"), j("link"), j("link/f")} {
		if _, err := Allow(abi, 0, []PathRule{{Path: p, Access: Read, ID: 1}}); err == nil || !strings.Contains(err.Error(), filepath.Base(filepath.Dir(p))) {
			t.Errorf("Allow(%s): %v", p, err)
		}
	}
}
