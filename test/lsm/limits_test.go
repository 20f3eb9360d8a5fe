//go:build vmtest

package lsm_test

import (
	"fmt"
	"os/exec"
	"strings"
	"testing"

	"github.com/assaymcp/assay/internal/assaytest"
)

// TestRunForkBomb: in a pure cgroup v2 layout, `assay run --pids 20`
// writes pids.max of the command's cgroup (enabling the controller in the
// parent), and a fork bomb (100 background sleeps, bounded) stays within
// it: the cgroup never holds more than 20 tasks, forks beyond are refused,
// and the machine outside can still fork. --memory and --cpu land in
// memory.max and cpu.max.
func TestRunForkBomb(t *testing.T) {
	script := `m=$(grep cgroup2 /proc/self/mountinfo | head -1 | cut -d' ' -f5); cg=$m$(grep '^0::' /proc/self/cgroup | cut -d: -f3)
sh -c 'i=0; while [ $i -lt 100 ]; do sleep 20 & i=$((i+1)); done' 2>/dev/null
read cur < $cg/pids.current; read max < $cg/pids.max; echo current $cur max $max
while read k v; do [ "$k" = max ] && echo max $v; done < $cg/pids.events
read mem < $cg/memory.max; read cpu < $cg/cpu.max; echo memory $mem cpu $cpu`
	cmd := exec.Command(assaytest.Binary(t), "run", "--pids", "20", "--memory", "64M", "--cpu", "0.5", "--", "/bin/busybox", "sh", "-c", script)
	res := assaytest.RunCmd(t, cmd)
	out := strings.Join(res.Stdout, "\n")
	if res.ExitCode != 0 {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", res.ExitCode, out, res.StderrText())
	}
	var cur, max, hits int
	for _, l := range res.Stdout {
		if strings.HasPrefix(l, "current ") {
			fmt.Sscanf(l, "current %d max %d", &cur, &max)
		}
		if strings.HasPrefix(l, "max ") {
			fmt.Sscanf(l, "max %d", &hits)
		}
	}
	if max != 20 || cur > 20 || hits == 0 {
		t.Errorf("pids.max %d, pids.current %d, refused forks %d: want 20, at most 20, some\n%s", max, cur, hits, out)
	}
	if !strings.Contains(out, "memory 67108864 cpu 50000 100000") {
		t.Errorf("memory.max and cpu.max not as asked:\n%s", out)
	}
	if err := exec.Command("/bin/busybox", "true").Run(); err != nil {
		t.Errorf("outside the sandbox, fork+exec failed: %v", err)
	}
	if !strings.Contains(res.StderrText(), "assay: contained: limits: memory 67108864 bytes (no swap), 20 processes/threads, 0.5 CPU cores") {
		t.Errorf("the report does not name the limits:\n%s", res.StderrText())
	}
}
