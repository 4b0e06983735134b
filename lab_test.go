package lab

import (
	"io/fs"
	"os/exec"
	"path"
	"strings"
	"testing"
)

// TestAgentSourceComplete: every lab package the agent imports, in each of
// its builds (static, and against F-Stack or a rump kernel), is in
// AgentSource, so an agent builds from what lab carries alone.
func TestAgentSourceComplete(t *testing.T) {
	for _, tags := range []string{"", "fstack", "rump"} {
		out, err := exec.Command("go", "list", "-deps", "-tags", tags, "-f", "{{.ImportPath}}", "./cmd/lab-agent").Output()
		if err != nil {
			t.Fatalf("go list -tags %q: %v", tags, err)
		}
		for _, pkg := range strings.Fields(string(out)) {
			dir, ok := strings.CutPrefix(pkg, "lab/")
			if !ok {
				continue
			}
			if _, err := fs.Stat(AgentSource, path.Join(dir, ".")); err != nil {
				t.Errorf("the agent (tags %q) imports %s, which AgentSource lacks", tags, pkg)
			}
		}
	}
}
