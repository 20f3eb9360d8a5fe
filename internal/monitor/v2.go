package monitor

import (
	"fmt"

	"github.com/assaymcp/assay/internal/kernel"
	"github.com/assaymcp/assay/internal/policy"
)

// compileV2 turns a version 2 policy into kernel rules. Until each part
// has its enforcement, it refuses the policy rather than dropping rules.
func compileV2(p *policy.Policy) (kernel.Rules, error) {
	return kernel.Rules{}, fmt.Errorf("%s: version 2 policies are checked (assay policy check) but this build does not enforce them yet", p.File)
}
