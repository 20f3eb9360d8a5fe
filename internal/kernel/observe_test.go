package kernel

import "testing"

// TestObserveHookArgs: every LSM observe program has its hook's argument
// count listed (ObserveLSMHere checks them against the running kernel),
// and the host kernel's hooks have those counts.
func TestObserveHookArgs(t *testing.T) {
	spec, err := embeddedSpec()
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range observePrograms {
		p := spec.Programs[name]
		if p == nil {
			t.Fatalf("no program %s", name)
		}
		hook := p.AttachTo
		want, ok := observeHookArgs[hook]
		if !ok {
			t.Errorf("%s attaches to %s, which observeHookArgs does not list", name, hook)
			continue
		}
		n, err := lsmHookArgs(hook)
		if err != nil {
			t.Fatal(err)
		}
		if n != want {
			t.Errorf("hook %s has %d arguments on this kernel, observe program %s expects %d", hook, n, name, want)
		}
	}
}
